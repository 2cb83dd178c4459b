/*
 * fhir/fhirpath.h — FHIRPath for FHIR R4 over the project's JSON tree (prefix fp_).
 *
 * What it is for: evaluating FHIRPath expressions — the invariants of the core
 * StructureDefinitions (ele-1, dom-2..6, bdl-*), the project's rules and
 * mappings, and `fhirgw fhirpath` — over an fj_doc, with FHIR type
 * information from the generated schema (fs_schema), so that `is`, `as`,
 * ofType(Quantity), choice elements (value[x]) and primitive extensions work.
 *
 * Language: the normative FHIRPath grammar and function set FHIR R4 uses, plus
 * the FHIR additions (resolve(), extension(url), hasValue(), getValue(),
 * conformsTo(), memberOf(), %resource, %rootResource, %context, %ucum, %sct,
 * %loinc, %`vs-name`, %`ext-name`). Partial dates and times, UCUM quantities
 * for the common units (time, calendar durations, length, mass, volume and
 * the units derived from them), three-valued logic.
 *
 * Life cycle:
 *   fp_expr *e = fp_compile(src, NULL, &err);         once (or via fp_cache)
 *   fp_arena *a = fp_arena_new();                      once per thread
 *   fp_env env; fp_env_init(&env, doc);                per document
 *   fp_evaluate_node(e, &env, node, NULL, NULL, a, &result, &err); many times
 *   ... read result.items ...
 *   fp_arena_reset(a);                                 results die here
 *
 * Memory and threads:
 * - fp_compile returns an immutable expression owned by the caller
 *   (fp_expr_free). It keeps its own copy of the source. A compiled
 *   expression may be evaluated by many threads at once.
 * - Evaluation allocates only from the caller's arena: the result collection,
 *   its items and any strings they point to live until fp_arena_reset or
 *   fp_arena_free. The arena keeps its blocks across resets, so a warmed-up
 *   evaluation allocates nothing from the heap. One arena per thread.
 * - Items of kind FP_NODE point into the fj_doc (and the schema's static
 *   tables); the doc must outlive the results.
 * - fp_cache owns the expressions it compiled; lookups lock a mutex, so one
 *   cache may serve several threads.
 *
 * Host functions: a program adds its own functions (the mapping engine's
 * translate(), a keyed pseudonym, a rule pack's checks) to an fp_functions
 * registry and compiles with it (fp_compile_with); see "host functions" below.
 *
 * Errors are values: compile and evaluation return false and fill an
 * fp_error with a message and the 0-based character position in the
 * expression (syntax problems, unknown functions and types, wrong argument
 * counts; at run time type problems such as '1' + 1 and single-item
 * expectations on a multi-item collection). Nothing prints or exits.
 */
#ifndef FHIR_FHIRPATH_H
#define FHIR_FHIRPATH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fhir/datetime.h"
#include "fhir/json.h"
#include "fhir/schema.h"

#define FP_NO_NODE UINT32_MAX

/* ---- values -------------------------------------------------------------- */

typedef enum fp_kind {
    FP_NODE,     /* a JSON node of a document: resource, element or FHIR primitive */
    FP_BOOLEAN,  /* System.Boolean */
    FP_INTEGER,  /* System.Integer (kept as int64) */
    FP_DECIMAL,  /* System.Decimal: long double + scale (digits after the point) */
    FP_STRING,   /* System.String (UTF-8, not NUL-terminated) */
    FP_DATE,     /* System.Date */
    FP_DATETIME, /* System.DateTime */
    FP_TIME,     /* System.Time */
    FP_QUANTITY, /* System.Quantity: decimal + UCUM unit or calendar keyword */
    FP_TYPEINFO  /* the result of type(): namespace and name */
} fp_kind;

/* The last component a date/time value has (a Time starts at FP_PREC_HOUR): fhir/datetime.h's precisions. */
typedef enum fp_precision {
    FP_PREC_YEAR = FDT_YEAR,
    FP_PREC_MONTH = FDT_MONTH,
    FP_PREC_DAY = FDT_DAY,
    FP_PREC_HOUR = FDT_HOUR,
    FP_PREC_MINUTE = FDT_MINUTE,
    FP_PREC_SECOND = FDT_SECOND,
    FP_PREC_MS = FDT_MS
} fp_precision;

/* System.Date, DateTime and Time values are fhir/datetime.h values (a Time has no year, month or day). */
typedef fdt_value fp_datetime;

typedef struct fp_item {
    uint8_t kind;     /* fp_kind */
    uint8_t calendar; /* quantity: unit is a calendar keyword ("week"), printed without quotes */
    int16_t scale;    /* decimal and quantity: digits after the decimal point */
    uint32_t len;     /* string: byte length; quantity: unit length */
    union {
        struct {
            const fj_doc *doc;
            uint32_t index;            /* the value node; FP_NO_NODE for a primitive that has only `_name` */
            uint32_t ext;              /* the `_name` companion object (id, extension), or FP_NO_NODE */
            const fs_type *type;       /* FHIR type, NULL when unknown */
            const fs_element *element; /* defining element, NULL for a root resource or unknown */
        } node;
        bool boolean;
        int64_t integer;
        long double decimal;
        const char *string;
        fp_datetime dt;
        struct {
            long double value;
            const char *unit; /* len bytes */
        } quantity;
        struct {
            const char *ns; /* "System" or "FHIR" */
            const char *name;
        } typeinfo;
    } u;
} fp_item;

/*
 * A collection: count items, in order. Owned by an arena (or by the caller for
 * inputs). Results are read-only: they may share items with the input, the
 * variables and the compiled expression (a literal's item).
 */
typedef struct fp_collection {
    fp_item *items;
    size_t count;
} fp_collection;

/* Items for callers that build inputs and variables (strings are not copied). */
fp_item fp_boolean(bool b);
fp_item fp_integer(int64_t i);
fp_item fp_string(const char *s, size_t len);
/*
 * A node of doc. type NULL: taken from the node's resourceType when it has
 * one; element may be NULL (a resource root, or a node of a known type).
 */
fp_item fp_node(const fs_schema *schema, const fj_doc *doc, uint32_t index, const fs_type *type,
                const fs_element *element);

/* ---- compile ------------------------------------------------------------- */

typedef struct fp_error {
    int position; /* 0-based character position in the expression; -1 when none */
    char message[200];
} fp_error;

typedef struct fp_expr fp_expr;

/*
 * Compile source (NUL-terminated). schema resolves type names (is, as,
 * ofType, Patient.name); NULL = fs_r4(). Returns NULL and fills *err on a
 * syntax error, an unknown function or type, or a wrong argument count.
 */
fp_expr *fp_compile(const char *source, const fs_schema *schema, fp_error *err);
void fp_expr_free(fp_expr *e);

typedef struct fp_functions fp_functions; /* host functions: see below */

typedef struct fp_compile_options {
    const fs_schema *schema;       /* NULL = fs_r4() */
    const fp_functions *functions; /* host functions the expression may call; NULL = the built-ins only */
} fp_compile_options;

/* fp_compile with options (opts NULL = defaults). The registry must outlive the expression. */
fp_expr *fp_compile_with(const char *source, const fp_compile_options *opts, fp_error *err);
const char *fp_expr_source(const fp_expr *e);

/* ---- evaluation memory --------------------------------------------------- */

typedef struct fp_arena fp_arena;

fp_arena *fp_arena_new(void);
/* Forget everything allocated since the last reset; keeps the blocks for reuse. */
void fp_arena_reset(fp_arena *a);
void fp_arena_free(fp_arena *a);
/* Bytes the arena holds from the heap (for benchmarks and limits). */
size_t fp_arena_capacity(const fp_arena *a);
/* size bytes, aligned for any item, until the next reset (host functions build results here); NULL when out of memory. */
void *fp_arena_alloc(fp_arena *a, size_t size);

/* ---- environment --------------------------------------------------------- */

/* A named variable, %name in expressions. */
typedef struct fp_var {
    const char *name;
    fp_collection value;
} fp_var;

/*
 * Value set membership for memberOf(): return 1 (member), 0 (not a member)
 * or -1 (cannot tell: memberOf yields empty). system may be NULL (a plain code).
 */
typedef int (*fp_member_of_fn)(void *ctx, const char *valueset_url, const char *system, size_t system_len,
                               const char *code, size_t code_len);
/* trace(name): called with the traced collection. */
typedef void (*fp_trace_fn)(void *ctx, const char *name, size_t name_len, const fp_collection *c);

typedef struct fp_env {
    const fs_schema *schema; /* NULL = fs_r4() */
    const fj_doc *doc;       /* the document the input is in (may be NULL: no input) */
    uint32_t resource;       /* %resource; FP_NO_NODE = none */
    uint32_t root_resource;  /* %rootResource (a containing Bundle); FP_NO_NODE = %resource */
    const fp_datetime *now;  /* now()/today()/timeOfDay(); NULL = the clock, UTC */
    const fp_var *vars;      /* user variables, searched before the built-in ones */
    size_t var_count;
    fp_member_of_fn member_of; /* NULL = the schema's expanded value sets */
    void *member_of_ctx;
    fp_trace_fn trace; /* NULL = trace() is silent */
    void *trace_ctx;
    unsigned max_depth; /* nesting of function calls and repeat(); 0 = FP_DEFAULT_MAX_DEPTH */
    /*
     * Compatibility with R4's own invariants, which the strict FHIRPath
     * reading (and its test suite) rejects. When set:
     * - `as` on several items filters them as ofType() does, instead of
     *   failing (dom-3: %resource.descendants().as(canonical));
     * - a System type name also matches the FHIR primitives that convert to
     *   it (que-7: answer is Boolean, where answer is a FHIR boolean).
     * The validator sets this when it checks the core constraints.
     */
    bool lenient;
} fp_env;

#define FP_DEFAULT_MAX_DEPTH 200u

/* Defaults: schema fs_r4(), %resource = %rootResource = the doc's root (when doc is not NULL). */
void fp_env_init(fp_env *env, const fj_doc *doc);

/*
 * Evaluate e with `input` as the context collection (%context, $this).
 * On success returns true and sets *out (items in the arena). On failure
 * returns false and fills *err (position in the expression).
 */
bool fp_evaluate(const fp_expr *e, const fp_env *env, const fp_collection *input, fp_arena *arena, fp_collection *out,
                 fp_error *err);

/*
 * Evaluate with one node of env->doc as the context: node FP_NO_NODE means an
 * empty input. type NULL = from resourceType; element may be NULL.
 */
bool fp_evaluate_node(const fp_expr *e, const fp_env *env, uint32_t node, const fs_type *type,
                      const fs_element *element, fp_arena *arena, fp_collection *out, fp_error *err);

/* The boolean reading of a result, as invariants use it. */
typedef enum fp_truth { FP_FALSE, FP_TRUE, FP_EMPTY, FP_NOT_BOOLEAN } fp_truth;
/* Empty -> FP_EMPTY; one Boolean (System or FHIR boolean) -> its value; else FP_NOT_BOOLEAN. */
fp_truth fp_truth_of(const fp_collection *c);

/* The System value of an item (a FHIR code node -> String, a date node -> Date, a Quantity object ->
 * Quantity; System items as they are). False when it has none (an object, a primitive with only
 * extensions). schema NULL = fs_r4(). */
bool fp_system_value(const fs_schema *schema, const fp_item *in, fp_item *out);

/* ---- host functions ------------------------------------------------------ */

/*
 * Functions a host adds to the language without touching the built-in library:
 *
 *   fp_functions *fns = fp_functions_new();
 *   fp_functions_add(fns, "translate", 1, 1, translate, &maps, &err);   // setup, one thread
 *   fp_compile_options o = {.functions = fns};
 *   fp_expr *e = fp_compile_with("gender.translate('v2-sex')", &o, &err);
 *   ... evaluate as usual, from any thread ...
 *   fp_expr_free(e); fp_functions_free(fns);
 *
 * A host function is resolved at compile time like a built-in: an unknown
 * name or a wrong argument count fails fp_compile_with. It cannot shadow a
 * built-in (or another host function): fp_functions_add refuses the name.
 *
 * When called, every argument is evaluated once, in the scope the call is
 * written in (no lambdas), and the callback gets the input collection and
 * the arguments' collections. It returns true with *out set (items and any
 * new strings in call->arena, via fp_arena_alloc; or in memory that outlives
 * the result), or false with a message in err->message: evaluation then
 * fails with "name(): message" at the call's position.
 *
 * Threads and memory: add every function before the first compile; after
 * that the registry is only read, so one registry may serve any number of
 * expressions and threads (callbacks that are evaluated from several threads
 * must be thread-safe themselves). The registry owns copies of the names;
 * it must outlive every expression compiled with it. user_arg is the
 * caller's and is passed back untouched.
 */
#define FP_MAX_ARGS 8u /* arguments any function call may have */

typedef struct fp_host_call {
    const char *name;           /* as registered */
    const fp_collection *input; /* the collection the function is invoked on */
    const fp_collection *args;  /* argc evaluated arguments */
    size_t argc;
    const fp_env *env;       /* the evaluation's environment (doc, %resource, variables) */
    const fs_schema *schema; /* for fp_system_value */
    fp_arena *arena;         /* where results go */
} fp_host_call;

typedef bool (*fp_host_fn)(void *user_arg, const fp_host_call *call, fp_collection *out, fp_error *err);

fp_functions *fp_functions_new(void);
/*
 * Register name (a FHIRPath identifier) taking min_args..max_args arguments
 * (at most FP_MAX_ARGS). False with err filled when the name is not an
 * identifier, is a built-in or already registered, the counts are wrong, or
 * memory runs out; the registry is then unchanged.
 */
bool fp_functions_add(fp_functions *fns, const char *name, unsigned min_args, unsigned max_args, fp_host_fn fn,
                      void *user_arg, fp_error *err);
size_t fp_functions_count(const fp_functions *fns);
void fp_functions_free(fp_functions *fns);

/* ---- output -------------------------------------------------------------- */

/*
 * The collection as a JSON array (malloc'd, caller frees): nodes as their JSON,
 * System strings, numbers and booleans as JSON values, dates and times as
 * their FHIRPath literal text without '@' ("2014-01", "10:30:00.000"),
 * quantities as "value 'unit'" (calendar units bare: "1 week").
 * Returns NULL only when out of memory.
 */
char *fp_collection_json(const fp_collection *c);
/* One item's text as toString() gives it (nodes: the primitive's value), appended to buf. Returns bytes written or needed. */
size_t fp_item_text(const fp_item *it, char *buf, size_t cap);

/* ---- expression cache ---------------------------------------------------- */

typedef struct fp_cache fp_cache;

/* schema NULL = fs_r4(). */
fp_cache *fp_cache_new(const fs_schema *schema);
/* A cache that compiles with these options (their registry must outlive the cache); opts NULL = defaults. */
fp_cache *fp_cache_new_with(const fp_compile_options *opts);
/*
 * The compiled form of source, compiling it on first use. The expression
 * belongs to the cache (valid until fp_cache_free). A source that does not
 * compile is remembered too: every lookup returns NULL with the same error.
 */
const fp_expr *fp_cache_get(fp_cache *c, const char *source, fp_error *err);
size_t fp_cache_count(const fp_cache *c);
void fp_cache_free(fp_cache *c);

#endif
