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
            uint32_t index;             /* the value node; FP_NO_NODE for a primitive that has only `_name` */
            uint32_t ext;               /* the `_name` companion object (id, extension), or FP_NO_NODE */
            const fs_type *type;        /* FHIR type, NULL when unknown */
            const fs_element *element;  /* defining element, NULL for a root resource or unknown */
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
            const char *ns;   /* "System" or "FHIR" */
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
    int position;      /* 0-based character position in the expression; -1 when none */
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
const char *fp_expr_source(const fp_expr *e);

/* ---- evaluation memory --------------------------------------------------- */

typedef struct fp_arena fp_arena;

fp_arena *fp_arena_new(void);
/* Forget everything allocated since the last reset; keeps the blocks for reuse. */
void fp_arena_reset(fp_arena *a);
void fp_arena_free(fp_arena *a);
/* Bytes the arena holds from the heap (for benchmarks and limits). */
size_t fp_arena_capacity(const fp_arena *a);

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
    const fs_schema *schema;   /* NULL = fs_r4() */
    const fj_doc *doc;         /* the document the input is in (may be NULL: no input) */
    uint32_t resource;         /* %resource; FP_NO_NODE = none */
    uint32_t root_resource;    /* %rootResource (a containing Bundle); FP_NO_NODE = %resource */
    const fp_datetime *now;    /* now()/today()/timeOfDay(); NULL = the clock, UTC */
    const fp_var *vars;        /* user variables, searched before the built-in ones */
    size_t var_count;
    fp_member_of_fn member_of; /* NULL = the schema's expanded value sets */
    void *member_of_ctx;
    fp_trace_fn trace;         /* NULL = trace() is silent */
    void *trace_ctx;
    unsigned max_depth;        /* nesting of function calls and repeat(); 0 = FP_DEFAULT_MAX_DEPTH */
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
bool fp_evaluate(const fp_expr *e, const fp_env *env, const fp_collection *input, fp_arena *arena,
                 fp_collection *out, fp_error *err);

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
/*
 * The compiled form of source, compiling it on first use. The expression
 * belongs to the cache (valid until fp_cache_free). A source that does not
 * compile is remembered too: every lookup returns NULL with the same error.
 */
const fp_expr *fp_cache_get(fp_cache *c, const char *source, fp_error *err);
size_t fp_cache_count(const fp_cache *c);
void fp_cache_free(fp_cache *c);

#endif
