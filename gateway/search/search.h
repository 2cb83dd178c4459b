/*
 * gateway/search/search.h — FHIR search requests parsed into values (prefix sq_).
 *
 *   GET /CarePlan?status=active,on-hold&date=ge2024-01&subject=Patient/p1&_count=20
 *
 * becomes a query of AND-ed parameters, each with OR-ed values, each value
 * with its prefix (eq, ne, gt, lt, ge, le, sa, eb, ap) and its parts (token
 * system|code, a date as the range of instants it covers, a number, a
 * reference's type and id), checked against the parameter definitions of
 * the schema. Result parameters (_count, _sort, _summary=count, _total) are
 * taken apart too; others (_elements, ...) are not supported and are
 * either ignored and reported (lenient, the default) or refused
 * (Prefer: handling=strict).
 *
 * Includes: _include=CarePlan:subject[:Patient], _include=*,
 * _revinclude=Observation:subject, each also with :iterate (applied to the
 * included resources again); at most SQ_MAX_INCLUDES of them.
 *
 * Chains: "subject.name=x", "subject:Patient.name=x" and
 * "subject:Patient.organization.name=x" follow reference parameters
 * forward; "_has:Observation:patient:code=x" follows them backwards (the
 * resources some Observation's `patient` points at); both nest, up to
 * SQ_MAX_CHAIN links. A link without a type reaches any type that has the
 * next parameter (all of them must agree on its kind).
 *
 * Dates without a timezone are read as UTC. Memory: the query owns what it
 * holds; free it with sq_free.
 */
#ifndef GATEWAY_SEARCH_H
#define GATEWAY_SEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fhir/outcome.h"
#include "fhir/schema.h"
#include "fhir/subset.h"
#include "gateway/util/limits.h"

typedef enum sq_prefix { SQ_EQ, SQ_NE, SQ_GT, SQ_LT, SQ_GE, SQ_LE, SQ_SA, SQ_EB, SQ_AP } sq_prefix;

typedef enum sq_modifier {
    SQ_MOD_NONE,
    SQ_MOD_EXACT,    /* string: exact match, case and accents count */
    SQ_MOD_CONTAINS, /* string: anywhere in the value */
    SQ_MOD_MISSING,  /* any kind: true = has no value, false = has one */
    SQ_MOD_NOT,      /* token: none of the values */
    SQ_MOD_TYPE      /* reference: ":Patient" restricts the target type (in `target_type`) */
} sq_modifier;

typedef struct sq_value {
    sq_prefix prefix;
    char *text; /* the value as given, unescaped (strings, uris, and for display) */
    /* token */
    char *system; /* NULL when the value had no '|'; "" for "|code" (no system) */
    char *code;   /* NULL for "system|" (any code of the system) */
    /* date: the instants the value covers, epoch milliseconds, inclusive */
    int64_t lo_ms, hi_ms;
    /* number / quantity */
    double number;
    int scale;         /* digits after the decimal point, for eq's implicit range */
    char *unit;        /* quantity: unit code, NULL when none */
    char *unit_system; /* quantity: the units' system (number|system|code), NULL when none or empty */
    /* reference */
    char *ref_type; /* NULL when the value is a bare id or a URL */
    char *ref_id;
    bool missing; /* :missing=true */
} sq_value;

#define SQ_MAX_CHAIN LIM(search_chain_max)

/* One link of a chain: from the resources at hand to the ones the condition is about. */
typedef struct sq_link {
    bool reverse;               /* _has: resources of `type` whose `ref` points at the one at hand */
    const fs_search_param *ref; /* the reference parameter followed */
    const char *type;           /* forward: the target type (":Patient"), NULL any; reverse: the referring type */
} sq_link;

typedef struct sq_param {
    sq_link chain[SQ_MAX_CHAIN]; /* followed first, in order; `def` is a parameter of the last link's type */
    size_t chain_len;
    const fs_search_param *def; /* the parameter definition (_id and _lastUpdated included) */
    sq_modifier modifier;
    char target_type[LIM(type_max) + 1]; /* with SQ_MOD_TYPE */
    sq_value *values;                    /* OR-ed */
    size_t value_count;
} sq_param;

#define SQ_MAX_INCLUDES LIM(search_includes_max)

typedef struct sq_include {
    bool reverse;               /* _revinclude: the resources of source_type pointing at the matches */
    bool iterate;               /* :iterate, also from included resources */
    const char *source_type;    /* the type whose parameter is followed; NULL with _include=* */
    const fs_search_param *ref; /* the reference parameter; NULL: every one (_include=*) */
    const char *target_type;    /* the optional third part (":Patient"), NULL: any */
} sq_include;

typedef struct sq_query {
    const fs_type *type;
    sq_include includes[SQ_MAX_INCLUDES];
    size_t include_count;
    sq_param *params; /* AND-ed */
    size_t param_count;
    int count;  /* page size (clamped to the configured maximum) */
    int offset; /* from _getpagesoffset (the server's links with an explicit _sort) */
    /* paging links of the server's own: _snapshot=<change sequence of the first page>, and with the
     * default order _cursor=a.<ms>.<n> (the page after that key) or b.<ms>.<n> (the page before) */
    int64_t snapshot; /* 0 when none */
    bool has_cursor, cursor_before;
    int64_t cursor_ms, cursor_rid;
    bool has_sort; /* _sort was given (else: newest first) */
    bool sort_descending;
    const fs_search_param *sort; /* NULL = by _lastUpdated */
    bool summary_count;          /* _summary=count: the total only */
    fsub_spec subset;            /* _summary=true|text|data or _elements: what of each match is answered */
    char *ignored;               /* "name, name" of parameters not applied, NULL when none */
} sq_query;

/* The usual sq_limits.max_params and max_values (rows of gateway/util/limits.h). */
#define SQ_MAX_PARAMS LIM(search_params_max)
#define SQ_MAX_VALUES LIM(search_values_max)

typedef struct sq_limits {
    int default_count; /* page_size_default */
    int max_count;     /* page_size_max */
    size_t max_params; /* AND-ed parameters at most (SQ_MAX_PARAMS) */
    size_t max_values; /* OR-ed values per parameter at most (SQ_MAX_VALUES) */
} sq_limits;

/*
 * Parse a query string (the part after '?', or an x-www-form-urlencoded
 * body) for resource type `type`. strict: unknown or unsupported parameters
 * are errors instead of being ignored. Returns false with issues (code
 * "invalid"/"not-supported", expression naming the parameter) on bad input.
 * `supported` says which kinds of search parameter the store can answer.
 */
bool sq_parse(const fs_schema *s, const fs_type *type, const char *query, bool strict, const sq_limits *limits,
              bool (*supported)(fs_search_kind), sq_query *out, oo_list *issues);
void sq_free(sq_query *q);

/*
 * The implicit range [lo, hi) of a number or quantity value: its precision
 * (5.4 = [5.35, 5.45), 100 = [99.5, 100.5)). The bounds are the decimals
 * themselves, rounded from text, so that an indexed 5.35 equals lo.
 */
void sq_number_range(const sq_value *v, double *lo, double *hi);

/* The date range [lo, hi] in epoch ms of a FHIR date, dateTime or instant ("2024", "2024-02-29T10:00:00+01:00"). */
bool sq_date_range(const char *text, size_t len, int64_t *lo_ms, int64_t *hi_ms);

/* Percent-decode (and '+' -> space) src[0..len) into a new NUL-terminated string. NULL on bad escapes. */
char *sq_url_decode(const char *src, size_t len);

/* The decoded value (malloc'd) of the first `name=` in a query string (or a form body), or NULL. */
char *sq_query_param(const char *query, const char *name);

#endif
