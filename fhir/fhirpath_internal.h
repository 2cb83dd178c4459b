/*
 * fhir/fhirpath_internal.h — what the fhirpath*.c files share and nobody
 * else sees: the arena allocator, the AST, the evaluation context, and the
 * value helpers (conversion, equality, ordering, dates, UCUM units).
 *
 *   fhirpath_value.c   arena, items, decimals, dates and times, UCUM, equality, ordering, output
 *   fhirpath_parse.c   lexer, parser, compile-time checks, the expression cache
 *   fhirpath_eval.c    the tree walk: navigation, operators, types, entry points
 *   fhirpath_func.c    the function library
 *   fhirpath_host.c    functions the host registers (fp_functions), and calling them
 */
#ifndef FHIR_FHIRPATH_INTERNAL_H
#define FHIR_FHIRPATH_INTERNAL_H

#include <regex.h>
#include <stdarg.h>

#include "fhir/fhirpath.h"

/* ---- arena (fhirpath_value.c) ------------------------------------------- */

/* size bytes aligned for any item (16); never NULL (aborting on OOM would be wrong: see fpa_failed). */
void *fpa_alloc(fp_arena *a, size_t size);
/* True once an allocation failed; evaluation reports "out of memory". */
bool fpa_failed(const fp_arena *a);
char *fpa_strndup(fp_arena *a, const char *s, size_t len);
/*
 * fhir/array.h's fa_reserve for arrays in the arena (collections, strings
 * being built): room for `needed` elements, doubling from `first`; the
 * `used` elements are copied to the new block and the old one is left to the
 * arena. False when out of memory (fpa_failed then says so).
 */
bool fpa_reserve(fp_arena *a, void *items_ptr, size_t *capacity, size_t used, size_t needed, size_t element_size,
                 size_t first);

/* ---- AST ----------------------------------------------------------------- */

typedef enum fp_ast_kind {
    A_LITERAL, /* literal item */
    A_EMPTY,   /* {} */
    A_MEMBER,  /* identifier: child elements of the target (or the focus) */
    A_CALL,    /* function: fn, args */
    A_THIS,    /* $this */
    A_INDEX,   /* $index */
    A_TOTAL,   /* $total */
    A_VAR,     /* %name */
    A_INDEXER, /* target[right] */
    A_NEGATE,  /* -target (unary plus is dropped by the parser) */
    A_BINARY,  /* target op right */
    A_IS,      /* target is type */
    A_AS       /* target as type */
} fp_ast_kind;

typedef enum fp_binop {
    OP_MUL,
    OP_DIV,
    OP_IDIV,
    OP_MOD,
    OP_ADD,
    OP_SUB,
    OP_CONCAT,
    OP_UNION,
    OP_LT,
    OP_LE,
    OP_GT,
    OP_GE,
    OP_EQ,
    OP_NE,
    OP_EQUIV,
    OP_NEQUIV,
    OP_IN,
    OP_CONTAINS,
    OP_AND,
    OP_OR,
    OP_XOR,
    OP_IMPLIES
} fp_binop;

/* A type named in an expression: a FHIR type, a System type, or (unqualified Quantity) both. */
typedef struct fp_typespec {
    const fs_type *fhir; /* NULL when the name is not a FHIR type */
    int system;          /* fp_kind of the System type, or -1 */
} fp_typespec;

typedef struct fp_host_function fp_host_function;

typedef struct fp_ast fp_ast;
struct fp_ast {
    uint8_t kind; /* fp_ast_kind */
    uint8_t op;   /* A_BINARY: fp_binop; A_CALL: fp_fn */
    uint16_t argc;
    uint32_t pos;         /* byte offset in the source */
    const fp_ast *target; /* invocation target / left operand; NULL = the focus */
    const fp_ast *right;  /* right operand, indexer */
    const fp_ast **args;
    const char *name; /* member, function or variable name (NUL-terminated copy) */
    uint32_t name_len;
    const fs_type *name_type;     /* A_MEMBER whose name is a type ("Patient"): filters by type */
    fp_typespec type;             /* A_IS, A_AS, and ofType/is/as calls */
    fp_item literal;              /* A_LITERAL */
    const regex_t *regex;         /* matches()/replaceMatches() with a literal pattern, compiled once */
    const fp_host_function *host; /* A_CALL of a host function (op F_HOST): in the caller's registry */
};

struct fp_expr {
    char *source;
    const fs_schema *schema;
    fp_arena *mem; /* the AST and its strings */
    const fp_ast *root;
    regex_t **regexes; /* owned, freed with the expression */
    size_t regex_count, regex_capacity;
};

/* ---- functions (fhirpath_func.c) ----------------------------------------- */

typedef enum fp_fn {
    F_EMPTY,
    F_EXISTS,
    F_ALL,
    F_ALLTRUE,
    F_ANYTRUE,
    F_ALLFALSE,
    F_ANYFALSE,
    F_SUBSETOF,
    F_SUPERSETOF,
    F_COUNT,
    F_DISTINCT,
    F_ISDISTINCT,
    F_WHERE,
    F_SELECT,
    F_REPEAT,
    F_OFTYPE,
    F_SINGLE,
    F_FIRST,
    F_LAST,
    F_TAIL,
    F_SKIP,
    F_TAKE,
    F_INTERSECT,
    F_EXCLUDE,
    F_UNION,
    F_COMBINE,
    F_IIF,
    F_TOBOOLEAN,
    F_CONVERTSTOBOOLEAN,
    F_TOINTEGER,
    F_CONVERTSTOINTEGER,
    F_TODECIMAL,
    F_CONVERTSTODECIMAL,
    F_TOSTRING,
    F_CONVERTSTOSTRING,
    F_TODATE,
    F_CONVERTSTODATE,
    F_TODATETIME,
    F_CONVERTSTODATETIME,
    F_TOTIME,
    F_CONVERTSTOTIME,
    F_TOQUANTITY,
    F_CONVERTSTOQUANTITY,
    F_INDEXOF,
    F_SUBSTRING,
    F_STARTSWITH,
    F_ENDSWITH,
    F_CONTAINS,
    F_UPPER,
    F_LOWER,
    F_REPLACE,
    F_MATCHES,
    F_MATCHESFULL,
    F_REPLACEMATCHES,
    F_LENGTH,
    F_TOCHARS,
    F_SPLIT,
    F_JOIN,
    F_TRIM,
    F_ENCODE,
    F_DECODE,
    F_ESCAPE,
    F_UNESCAPE,
    F_ABS,
    F_CEILING,
    F_EXP,
    F_FLOOR,
    F_LN,
    F_LOG,
    F_POWER,
    F_ROUND,
    F_SQRT,
    F_TRUNCATE,
    F_CHILDREN,
    F_DESCENDANTS,
    F_TRACE,
    F_NOW,
    F_TIMEOFDAY,
    F_TODAY,
    F_NOT,
    F_IS,
    F_AS,
    F_TYPE,
    F_SORT,
    F_AGGREGATE,
    F_LOWBOUNDARY,
    F_HIGHBOUNDARY,
    F_PRECISION,
    F_COMPARABLE,
    F_EXTENSION,
    F_HASVALUE,
    F_GETVALUE,
    F_RESOLVE,
    F_CONFORMSTO,
    F_MEMBEROF,
    F_SUBSUMES,
    F_SUBSUMEDBY,
    F_HTMLCHECKS,
    F_HOST, /* a function of the host's registry (fp_ast.host) */
    F_COUNT_
} fp_fn;

enum {
    FN_TYPE_ARG = 1 << 0 /* the single argument is a type specifier (ofType, is, as) */
};

typedef struct fp_function {
    const char *name;
    uint8_t id; /* fp_fn */
    uint8_t min_args, max_args;
    uint8_t flags; /* FN_* */
} fp_function;

/* Compile a FHIRPath (PCRE-style) pattern as a POSIX ERE; full anchors it. Returns regcomp's code. */
int fp_regex_compile(regex_t *re, const char *pattern, size_t len, bool full);

/* The function named name[0..len), or NULL. */
const fp_function *fp_function_find(const char *name, size_t len);

/* ---- host functions (fhirpath_host.c) ------------------------------------- */

struct fp_host_function {
    char *name; /* owned copy */
    size_t name_len;
    unsigned min_args, max_args;
    fp_host_fn fn;
    void *user_arg;
};

/* The host function named name[0..len) in fns (which may be NULL), or NULL. */
const fp_host_function *fp_host_find(const fp_functions *fns, const char *name, size_t len);

/* ---- evaluation ---------------------------------------------------------- */

/* What $this, $index, $total and a bare identifier refer to at a point of the walk. */
typedef struct fp_scope {
    const fp_collection *focus; /* input of an invocation without target */
    const fp_collection *this_; /* $this */
    int64_t index;              /* $index (-1 outside iterations) */
    const fp_collection *total; /* $total (NULL outside aggregate) */
} fp_scope;

typedef struct fp_ctx {
    const fp_env *env;
    const fs_schema *schema;
    const fp_expr *expr;
    fp_arena *arena;
    fp_error *err;
    fp_collection context; /* %context */
    fp_datetime now;
    bool now_known;
    unsigned depth, max_depth;
} fp_ctx;

bool fp_eval(fp_ctx *c, const fp_ast *n, const fp_scope *s, fp_collection *out);
/* Record an error at n's position; always returns false. */
bool fp_fail(fp_ctx *c, const fp_ast *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
bool fp_call(fp_ctx *c, const fp_ast *n, const fp_collection *input, const fp_scope *s, fp_collection *out);
/* Evaluate a call of a host function: its arguments in scope s, then the callback. */
bool fp_call_host(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s, fp_collection *out);

/* Collections built in the arena. */
void fpc_push(fp_ctx *c, fp_collection *coll, size_t *cap, const fp_item *it);
bool fpc_single(fp_ctx *c, const fp_ast *n, const fp_item *it, fp_collection *out);
static inline void fpc_empty(fp_collection *out)
{
    out->items = NULL;
    out->count = 0;
}

/* Is an item equal (=) to one of coll's? */
bool fp_contains_item(fp_ctx *c, const fp_collection *coll, const fp_item *it);
/* a | b without duplicates, in order of first appearance. */
bool fp_union(fp_ctx *c, const fp_collection *a, const fp_collection *b, fp_collection *out);

/* Navigation (fhirpath_eval.c). name NULL = every child (children()). */
void fp_members(fp_ctx *c, const fp_item *it, const char *name, size_t len, fp_collection *out, size_t *cap);
/* The node item for doc node index, with type from resourceType when type is NULL or abstract. */
fp_item fp_node_item(const fs_schema *s, const fj_doc *d, uint32_t index, uint32_t ext, const fs_type *type,
                     const fs_element *element);
/* Type test: does item have (a subtype of) type ts. lenient: see fp_env.lenient. */
bool fp_item_is(const fs_schema *s, bool lenient, const fp_item *it, const fp_typespec *ts);
/* FHIR type name of a node item ("Patient", "string"), or NULL. */
const char *fp_item_type_name(const fp_item *it);
/* is_a over the schema's base chain. */
bool fp_type_is_a(const fs_schema *s, const fs_type *t, const fs_type *base);

/* Three-valued truth of a collection in a boolean position: 1, 0, -1 empty; -2 error (recorded). */
int fp_truth3(fp_ctx *c, const fp_ast *n, const fp_collection *coll);

/* ---- values (fhirpath_value.c) ------------------------------------------- */

/*
 * The System value of an item: FHIR primitives by their type (date ->
 * Date, ...), a FHIR Quantity object -> Quantity; System items as they are.
 * Returns false when the item has no System value (an object, or a
 * primitive that has only an extension).
 */
bool fp_to_system(const fs_schema *s, const fp_item *in, fp_item *out);

/* Equality (=): 1 equal, 0 not, -1 empty (incomparable precision/units). */
int fp_equal_items(const fs_schema *s, const fp_item *a, const fp_item *b);
/* Equivalence (~). */
bool fp_equivalent_items(const fs_schema *s, const fp_item *a, const fp_item *b);

typedef enum fp_cmp { FP_CMP_OK, FP_CMP_EMPTY, FP_CMP_TYPE } fp_cmp;
/* Ordering of two System values: *sign <0, 0, >0. FP_CMP_TYPE when they cannot be ordered. */
fp_cmp fp_compare_items(const fs_schema *s, const fp_item *a, const fp_item *b, int *sign, long double now_tz);

/* Decimal helpers. */
long double fp_pow10(int n);
long double fp_round_to(long double v, int scale);
/* The scale (≤ 8) that shows v without trailing zeros, but at least min_scale. */
int fp_natural_scale(long double v, int min_scale);
/* A decimal or integer literal / string: "-12.50" -> value, scale 2, integral false. */
bool fp_parse_number(const char *s, size_t len, long double *v, int *scale, bool *integral, int64_t *ival);

/* Dates and times. */
size_t fp_scan_temporal(const char *s, size_t len, bool time_only, fp_datetime *dt, bool *saw_t);
size_t fp_format_temporal(fp_kind kind, const fp_datetime *dt, char *buf, size_t cap);
/* Add a calendar/time quantity to a date or dateTime (kind); false when the unit cannot be added. */
bool fp_add_duration(fp_kind kind, fp_datetime *dt, long double amount, const char *unit, size_t unit_len,
                     bool calendar);
/* Precision as FHIRPath counts digits (year 4 ... ms 17; time hour 2 ... ms 9). */
int fp_temporal_digits(fp_kind kind, int precision);
bool fp_boundary_temporal(fp_kind kind, const fp_datetime *in, int digits, bool high, fp_datetime *out);
void fp_clock_now(fp_datetime *dt);

/* UCUM: unit -> factor to the base units and the dimension vector. */
#define FP_DIMS 9
typedef struct fp_unit {
    long double factor;
    int8_t dim[FP_DIMS];
} fp_unit;
bool fp_unit_parse(const char *unit, size_t len, bool calendar, fp_unit *out);
/* The base-unit text of a dimension vector ("g/m", "m2", "1") in the arena. */
const char *fp_unit_text(fp_arena *a, const fp_unit *u, uint32_t *len);
/* Calendar keyword (year, months, ...) -> canonical singular name, or NULL. */
const char *fp_calendar_unit(const char *s, size_t len);
/* Parse "value 'unit'" or "value calendar-word" (toQuantity); unit copied to the arena. */
bool fp_parse_quantity(fp_arena *a, const char *s, size_t len, fp_item *out);

/* b's value in a's unit (false when the units are not comparable). */
bool fp_quantity_convert(const fp_item *a, const fp_item *b, long double *bv);

/* Text of a System item (toString) into buf; returns length (truncates at cap). */
size_t fp_system_text(const fp_item *it, char *buf, size_t cap);

#endif
