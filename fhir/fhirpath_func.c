/*
 * fhir/fhirpath_func.c — the FHIRPath function library: existence,
 * filtering and projection, subsetting, combining, conversion, strings,
 * math, tree navigation, utility, types, and the FHIR additions (extension,
 * hasValue, getValue, resolve, conformsTo, memberOf).
 *
 * Arguments are evaluated in one of two ways. Most functions evaluate them
 * once, in the scope where the call is written (so $this in
 * `name.given.combine($this.name.family)` is the outer $this). The lambda
 * functions (where, select, all, exists, repeat, sort, aggregate) evaluate
 * their argument once per input item, with that item as focus and $this,
 * and its position as $index.
 */
#include "fhir/fhirpath_internal.h"

#include "fhir/reference.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FP_MAX_REPEAT_ITEMS 1000000u /* repeat() stops with an error beyond this */

static const fp_function functions[] = {
    {"empty", F_EMPTY, 0, 0, 0},
    {"exists", F_EXISTS, 0, 1, 0},
    {"all", F_ALL, 1, 1, 0},
    {"allTrue", F_ALLTRUE, 0, 0, 0},
    {"anyTrue", F_ANYTRUE, 0, 0, 0},
    {"allFalse", F_ALLFALSE, 0, 0, 0},
    {"anyFalse", F_ANYFALSE, 0, 0, 0},
    {"subsetOf", F_SUBSETOF, 1, 1, 0},
    {"supersetOf", F_SUPERSETOF, 1, 1, 0},
    {"count", F_COUNT, 0, 0, 0},
    {"distinct", F_DISTINCT, 0, 0, 0},
    {"isDistinct", F_ISDISTINCT, 0, 0, 0},
    {"where", F_WHERE, 1, 1, 0},
    {"select", F_SELECT, 1, 1, 0},
    {"repeat", F_REPEAT, 1, 1, 0},
    {"ofType", F_OFTYPE, 1, 1, FN_TYPE_ARG},
    {"single", F_SINGLE, 0, 0, 0},
    {"first", F_FIRST, 0, 0, 0},
    {"last", F_LAST, 0, 0, 0},
    {"tail", F_TAIL, 0, 0, 0},
    {"skip", F_SKIP, 1, 1, 0},
    {"take", F_TAKE, 1, 1, 0},
    {"intersect", F_INTERSECT, 1, 1, 0},
    {"exclude", F_EXCLUDE, 1, 1, 0},
    {"union", F_UNION, 1, 1, 0},
    {"combine", F_COMBINE, 1, 1, 0},
    {"iif", F_IIF, 2, 3, 0},
    {"toBoolean", F_TOBOOLEAN, 0, 0, 0},
    {"convertsToBoolean", F_CONVERTSTOBOOLEAN, 0, 0, 0},
    {"toInteger", F_TOINTEGER, 0, 0, 0},
    {"convertsToInteger", F_CONVERTSTOINTEGER, 0, 0, 0},
    {"toDecimal", F_TODECIMAL, 0, 0, 0},
    {"convertsToDecimal", F_CONVERTSTODECIMAL, 0, 0, 0},
    {"toString", F_TOSTRING, 0, 0, 0},
    {"convertsToString", F_CONVERTSTOSTRING, 0, 0, 0},
    {"toDate", F_TODATE, 0, 0, 0},
    {"convertsToDate", F_CONVERTSTODATE, 0, 0, 0},
    {"toDateTime", F_TODATETIME, 0, 0, 0},
    {"convertsToDateTime", F_CONVERTSTODATETIME, 0, 0, 0},
    {"toTime", F_TOTIME, 0, 0, 0},
    {"convertsToTime", F_CONVERTSTOTIME, 0, 0, 0},
    {"toQuantity", F_TOQUANTITY, 0, 1, 0},
    {"convertsToQuantity", F_CONVERTSTOQUANTITY, 0, 1, 0},
    {"indexOf", F_INDEXOF, 1, 1, 0},
    {"substring", F_SUBSTRING, 1, 2, 0},
    {"startsWith", F_STARTSWITH, 1, 1, 0},
    {"endsWith", F_ENDSWITH, 1, 1, 0},
    {"contains", F_CONTAINS, 1, 1, 0},
    {"upper", F_UPPER, 0, 0, 0},
    {"lower", F_LOWER, 0, 0, 0},
    {"replace", F_REPLACE, 2, 2, 0},
    {"matches", F_MATCHES, 1, 1, 0},
    {"matchesFull", F_MATCHESFULL, 1, 1, 0},
    {"replaceMatches", F_REPLACEMATCHES, 2, 2, 0},
    {"length", F_LENGTH, 0, 0, 0},
    {"toChars", F_TOCHARS, 0, 0, 0},
    {"split", F_SPLIT, 1, 1, 0},
    {"join", F_JOIN, 0, 1, 0},
    {"trim", F_TRIM, 0, 0, 0},
    {"encode", F_ENCODE, 1, 1, 0},
    {"decode", F_DECODE, 1, 1, 0},
    {"escape", F_ESCAPE, 1, 1, 0},
    {"unescape", F_UNESCAPE, 1, 1, 0},
    {"abs", F_ABS, 0, 0, 0},
    {"ceiling", F_CEILING, 0, 0, 0},
    {"exp", F_EXP, 0, 0, 0},
    {"floor", F_FLOOR, 0, 0, 0},
    {"ln", F_LN, 0, 0, 0},
    {"log", F_LOG, 1, 1, 0},
    {"power", F_POWER, 1, 1, 0},
    {"round", F_ROUND, 0, 1, 0},
    {"sqrt", F_SQRT, 0, 0, 0},
    {"truncate", F_TRUNCATE, 0, 0, 0},
    {"children", F_CHILDREN, 0, 0, 0},
    {"descendants", F_DESCENDANTS, 0, 0, 0},
    {"trace", F_TRACE, 1, 2, 0},
    {"now", F_NOW, 0, 0, 0},
    {"timeOfDay", F_TIMEOFDAY, 0, 0, 0},
    {"today", F_TODAY, 0, 0, 0},
    {"not", F_NOT, 0, 0, 0},
    {"is", F_IS, 1, 1, FN_TYPE_ARG},
    {"as", F_AS, 1, 1, FN_TYPE_ARG},
    {"type", F_TYPE, 0, 0, 0},
    {"sort", F_SORT, 0, 8, 0},
    {"aggregate", F_AGGREGATE, 1, 2, 0},
    {"lowBoundary", F_LOWBOUNDARY, 0, 1, 0},
    {"highBoundary", F_HIGHBOUNDARY, 0, 1, 0},
    {"precision", F_PRECISION, 0, 0, 0},
    {"comparable", F_COMPARABLE, 1, 1, 0},
    {"extension", F_EXTENSION, 1, 1, 0},
    {"hasValue", F_HASVALUE, 0, 0, 0},
    {"getValue", F_GETVALUE, 0, 0, 0},
    {"resolve", F_RESOLVE, 0, 0, 0},
    {"conformsTo", F_CONFORMSTO, 1, 1, 0},
    {"memberOf", F_MEMBEROF, 1, 1, 0},
    {"subsumes", F_SUBSUMES, 1, 1, 0},
    {"subsumedBy", F_SUBSUMEDBY, 1, 1, 0},
    {"htmlChecks", F_HTMLCHECKS, 0, 0, 0},
};

const fp_function *fp_function_find(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof functions / sizeof *functions; i++)
        if (strlen(functions[i].name) == len && !memcmp(functions[i].name, name, len))
            return &functions[i];
    return NULL;
}

/* ---- shared helpers ------------------------------------------------------ */

static bool empty_result(fp_collection *out)
{
    fpc_empty(out);
    return true;
}

static bool bool_result(fp_ctx *c, const fp_ast *n, bool v, fp_collection *out)
{
    fp_item b = fp_boolean(v);
    return fpc_single(c, n, &b, out);
}

static bool int_result(fp_ctx *c, const fp_ast *n, int64_t v, fp_collection *out)
{
    fp_item it = fp_integer(v);
    return fpc_single(c, n, &it, out);
}

static bool decimal_result(fp_ctx *c, const fp_ast *n, long double v, int scale, fp_collection *out)
{
    if (!isfinite(v))
        return empty_result(out);
    fp_item it = {.kind = FP_DECIMAL, .scale = (int16_t)(scale < 0 ? 0 : scale > 18 ? 18 : scale)};
    it.u.decimal = v;
    return fpc_single(c, n, &it, out);
}

static bool string_result(fp_ctx *c, const fp_ast *n, const char *s, size_t len, fp_collection *out)
{
    fp_item it = fp_string(s, len);
    return fpc_single(c, n, &it, out);
}

static const char *kind_label(const fp_item *it)
{
    static const char *const names[] = {"element", "Boolean",  "Integer", "Decimal",  "String",
                                        "Date",    "DateTime", "Time",    "Quantity", "TypeInfo"};
    if (it->kind == FP_NODE && it->u.node.type)
        return it->u.node.type->name;
    return names[it->kind];
}

/*
 * The single input item as a System value. *empty when the input is empty
 * (or a primitive with no value); an error for several items or for an
 * item with no System value (an object).
 */
static bool single_value(fp_ctx *c, const fp_ast *n, const fp_collection *in, fp_item *v, bool *empty)
{
    *empty = false;
    if (in->count == 0 || (in->count == 1 && in->items[0].kind == FP_NODE && in->items[0].u.node.index == FP_NO_NODE)) {
        *empty = true;
        return true;
    }
    if (in->count > 1)
        return fp_fail(c, n, "%s() expects a single item, got %zu", n->name, in->count);
    if (!fp_to_system(c->schema, &in->items[0], v))
        return fp_fail(c, n, "%s() cannot be applied to a %s", n->name, kind_label(&in->items[0]));
    return true;
}

static bool single_string(fp_ctx *c, const fp_ast *n, const fp_collection *in, fp_item *v, bool *empty)
{
    if (!single_value(c, n, in, v, empty))
        return false;
    if (!*empty && v->kind != FP_STRING)
        return fp_fail(c, n, "%s() expects a String, not a %s", n->name, kind_label(&in->items[0]));
    return true;
}

/* Argument k, evaluated once in the caller's scope. */
static bool arg(fp_ctx *c, const fp_ast *n, unsigned k, const fp_scope *s, fp_collection *out)
{
    return fp_eval(c, n->args[k], s, out);
}

static bool arg_value(fp_ctx *c, const fp_ast *n, unsigned k, const fp_scope *s, fp_item *v, bool *empty)
{
    fp_collection a;
    if (!arg(c, n, k, s, &a))
        return false;
    *empty = a.count == 0;
    if (*empty)
        return true;
    if (a.count > 1)
        return fp_fail(c, n->args[k], "argument %u of %s() must be a single item, got %zu", k + 1, n->name, a.count);
    if (!fp_to_system(c->schema, &a.items[0], v))
        return fp_fail(c, n->args[k], "argument %u of %s() cannot be a %s", k + 1, n->name, kind_label(&a.items[0]));
    return true;
}

static bool arg_string(fp_ctx *c, const fp_ast *n, unsigned k, const fp_scope *s, fp_item *v, bool *empty)
{
    if (!arg_value(c, n, k, s, v, empty))
        return false;
    if (!*empty && v->kind != FP_STRING)
        return fp_fail(c, n->args[k], "argument %u of %s() must be a String", k + 1, n->name);
    return true;
}

static bool arg_integer(fp_ctx *c, const fp_ast *n, unsigned k, const fp_scope *s, int64_t *v, bool *empty)
{
    fp_item it;
    if (!arg_value(c, n, k, s, &it, empty))
        return false;
    if (*empty)
        return true;
    if (it.kind != FP_INTEGER)
        return fp_fail(c, n->args[k], "argument %u of %s() must be an Integer", k + 1, n->name);
    *v = it.u.integer;
    return true;
}

/* Argument k evaluated with input item i as focus, $this and $index. */
static bool lambda(fp_ctx *c, const fp_ast *n, unsigned k, const fp_scope *s, const fp_collection *in, size_t i,
                   fp_collection *out)
{
    fp_collection one = {&in->items[i], 1};
    fp_scope inner = {.focus = &one, .this_ = &one, .index = (int64_t)i, .total = s->total};
    return fp_eval(c, n->args[k], &inner, out);
}

/* Items in an arena copy (for results built by pieces). */
static char *arena_text(fp_ctx *c, const fp_ast *n, size_t len)
{
    char *p = fpa_alloc(c->arena, len + 1);
    if (!p)
        fp_fail(c, n, "out of memory");
    return p;
}

/* ---- existence ----------------------------------------------------------- */

static bool fn_exists(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s, fp_collection *out)
{
    if (n->argc == 0)
        return bool_result(c, n, in->count > 0, out);
    for (size_t i = 0; i < in->count; i++) {
        fp_collection r;
        if (!lambda(c, n, 0, s, in, i, &r))
            return false;
        int t = fp_truth3(c, n->args[0], &r);
        if (t == -2)
            return false;
        if (t == 1)
            return bool_result(c, n, true, out);
    }
    return bool_result(c, n, false, out);
}

static bool fn_all(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s, fp_collection *out)
{
    for (size_t i = 0; i < in->count; i++) {
        fp_collection r;
        if (!lambda(c, n, 0, s, in, i, &r))
            return false;
        int t = fp_truth3(c, n->args[0], &r);
        if (t == -2)
            return false;
        if (t != 1)
            return bool_result(c, n, false, out);
    }
    return bool_result(c, n, true, out);
}

/* allTrue, anyTrue, allFalse, anyFalse over a collection of booleans. */
static bool fn_bool_aggregate(fp_ctx *c, const fp_ast *n, const fp_collection *in, fp_collection *out)
{
    bool want = n->op == F_ALLTRUE || n->op == F_ANYTRUE;
    bool all = n->op == F_ALLTRUE || n->op == F_ALLFALSE;
    for (size_t i = 0; i < in->count; i++) {
        fp_item v;
        if (!fp_to_system(c->schema, &in->items[i], &v) || v.kind != FP_BOOLEAN)
            return fp_fail(c, n, "%s() expects booleans, found a %s", n->name, kind_label(&in->items[i]));
        if (all && v.u.boolean != want)
            return bool_result(c, n, false, out);
        if (!all && v.u.boolean == want)
            return bool_result(c, n, true, out);
    }
    return bool_result(c, n, all, out);
}

static bool subset(fp_ctx *c, const fp_collection *a, const fp_collection *b)
{
    for (size_t i = 0; i < a->count; i++)
        if (!fp_contains_item(c, b, &a->items[i]))
            return false;
    return true;
}

static bool fn_distinct(fp_ctx *c, const fp_ast *n, const fp_collection *in, fp_collection *out)
{
    fp_collection none = {NULL, 0};
    if (!fp_union(c, in, &none, out))
        return false;
    if (n->op == F_ISDISTINCT)
        return bool_result(c, n, out->count == in->count, out);
    return true;
}

/* ---- filtering and projection -------------------------------------------- */

static bool fn_where(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s, fp_collection *out)
{
    size_t cap = 0;
    fpc_empty(out);
    for (size_t i = 0; i < in->count; i++) {
        fp_collection r;
        if (!lambda(c, n, 0, s, in, i, &r))
            return false;
        int t = fp_truth3(c, n->args[0], &r);
        if (t == -2)
            return false;
        if (t == 1)
            fpc_push(c, out, &cap, &in->items[i]);
    }
    return true;
}

static bool fn_select(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s, fp_collection *out)
{
    size_t cap = 0;
    fpc_empty(out);
    for (size_t i = 0; i < in->count; i++) {
        fp_collection r;
        if (!lambda(c, n, 0, s, in, i, &r))
            return false;
        if (in->count == 1) {
            *out = r;
            return true;
        }
        for (size_t j = 0; j < r.count; j++)
            fpc_push(c, out, &cap, &r.items[j]);
    }
    return true;
}

/* repeat() keeps an item once: nodes by identity, values by equality. */
static bool seen(fp_ctx *c, const fp_collection *coll, const fp_item *it)
{
    for (size_t i = 0; i < coll->count; i++) {
        const fp_item *x = &coll->items[i];
        if (x->kind == FP_NODE && it->kind == FP_NODE) {
            if (x->u.node.doc == it->u.node.doc && x->u.node.index == it->u.node.index &&
                x->u.node.ext == it->u.node.ext)
                return true;
        } else if (x->kind != FP_NODE && it->kind != FP_NODE && fp_equal_items(c->schema, x, it) == 1) {
            return true;
        }
    }
    return false;
}

static bool fn_repeat(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s, fp_collection *out)
{
    size_t cap = 0;
    fpc_empty(out);
    fp_collection current = *in;
    while (current.count) {
        fp_collection next = {NULL, 0};
        size_t next_cap = 0;
        for (size_t i = 0; i < current.count; i++) {
            fp_collection r;
            if (!lambda(c, n, 0, s, &current, i, &r))
                return false;
            for (size_t j = 0; j < r.count; j++) {
                if (seen(c, out, &r.items[j]))
                    continue;
                if (out->count >= FP_MAX_REPEAT_ITEMS)
                    return fp_fail(c, n, "repeat() produced more than %u items", FP_MAX_REPEAT_ITEMS);
                fpc_push(c, out, &cap, &r.items[j]);
                fpc_push(c, &next, &next_cap, &r.items[j]);
            }
        }
        if (fpa_failed(c->arena))
            return fp_fail(c, n, "out of memory");
        current = next;
    }
    return true;
}

static bool fn_of_type(fp_ctx *c, const fp_ast *n, const fp_collection *in, fp_collection *out)
{
    size_t cap = 0;
    fpc_empty(out);
    for (size_t i = 0; i < in->count; i++)
        if (fp_item_is(c->schema, c->env->lenient, &in->items[i], &n->type))
            fpc_push(c, out, &cap, &in->items[i]);
    return true;
}

/* ---- subsetting ---------------------------------------------------------- */

static bool slice(const fp_collection *in, size_t from, size_t count, fp_collection *out)
{
    if (from >= in->count || count == 0)
        return empty_result(out);
    if (count > in->count - from)
        count = in->count - from;
    out->items = in->items + from;
    out->count = count;
    return true;
}

static bool fn_skip_take(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s, fp_collection *out)
{
    int64_t k;
    bool empty;
    if (!arg_integer(c, n, 0, s, &k, &empty))
        return false;
    if (empty)
        return empty_result(out);
    if (n->op == F_SKIP)
        return k <= 0 ? (*out = *in, true) : slice(in, (size_t)k, in->count, out);
    return k <= 0 ? empty_result(out) : slice(in, 0, (size_t)k, out);
}

static bool fn_intersect_exclude(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s,
                                 fp_collection *out)
{
    fp_collection other;
    if (!arg(c, n, 0, s, &other))
        return false;
    size_t cap = 0;
    fpc_empty(out);
    for (size_t i = 0; i < in->count; i++) {
        bool in_other = fp_contains_item(c, &other, &in->items[i]);
        if (n->op == F_EXCLUDE ? !in_other : (in_other && !fp_contains_item(c, out, &in->items[i])))
            fpc_push(c, out, &cap, &in->items[i]);
    }
    return true;
}

static bool fn_combine(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s, fp_collection *out)
{
    fp_collection other;
    if (!arg(c, n, 0, s, &other))
        return false;
    if (n->op == F_UNION)
        return fp_union(c, in, &other, out);
    size_t cap = 0;
    fpc_empty(out);
    for (size_t i = 0; i < in->count; i++)
        fpc_push(c, out, &cap, &in->items[i]);
    for (size_t i = 0; i < other.count; i++)
        fpc_push(c, out, &cap, &other.items[i]);
    return true;
}

/* iif(criterion, true-result [, otherwise-result]); only the chosen branch is evaluated. */
static bool fn_iif(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s, fp_collection *out)
{
    fp_scope inner = *s;
    if (n->target) { /* x.iif(...): x is the focus and $this of the arguments */
        if (in->count > 1)
            return fp_fail(c, n, "iif() expects a single input item, got %zu", in->count);
        inner.focus = inner.this_ = in;
    }
    fp_collection crit;
    if (!fp_eval(c, n->args[0], &inner, &crit))
        return false;
    int t = fp_truth3(c, n->args[0], &crit);
    if (t == -2)
        return false;
    if (t == 1)
        return fp_eval(c, n->args[1], &inner, out);
    if (n->argc == 3)
        return fp_eval(c, n->args[2], &inner, out);
    return empty_result(out);
}

/* ---- conversion ---------------------------------------------------------- */

static bool ci_equal(const char *s, size_t len, const char *word)
{
    size_t n = strlen(word);
    if (n != len)
        return false;
    for (size_t i = 0; i < n; i++)
        if (tolower((unsigned char)s[i]) != word[i])
            return false;
    return true;
}

static bool to_boolean(const fp_item *v, fp_item *out)
{
    switch (v->kind) {
    case FP_BOOLEAN: *out = *v; return true;
    case FP_INTEGER:
        if (v->u.integer != 0 && v->u.integer != 1)
            return false;
        *out = fp_boolean(v->u.integer == 1);
        return true;
    case FP_DECIMAL:
        if (v->u.decimal != 0 && v->u.decimal != 1)
            return false;
        *out = fp_boolean(v->u.decimal == 1);
        return true;
    case FP_STRING: {
        static const char *const yes[] = {"true", "t", "yes", "y", "1", "1.0"};
        static const char *const no[] = {"false", "f", "no", "n", "0", "0.0"};
        for (size_t i = 0; i < 6; i++) {
            if (ci_equal(v->u.string, v->len, yes[i])) {
                *out = fp_boolean(true);
                return true;
            }
            if (ci_equal(v->u.string, v->len, no[i])) {
                *out = fp_boolean(false);
                return true;
            }
        }
        return false;
    }
    default: return false;
    }
}

static bool to_integer(const fp_item *v, fp_item *out)
{
    switch (v->kind) {
    case FP_INTEGER: *out = *v; return true;
    case FP_BOOLEAN: *out = fp_integer(v->u.boolean); return true;
    case FP_STRING: {
        long double d;
        int scale;
        bool integral;
        int64_t i;
        if (!fp_parse_number(v->u.string, v->len, &d, &scale, &integral, &i) || !integral)
            return false;
        *out = fp_integer(i);
        return true;
    }
    default: return false;
    }
}

static bool to_decimal(const fp_item *v, fp_item *out)
{
    memset(out, 0, sizeof *out);
    out->kind = FP_DECIMAL;
    switch (v->kind) {
    case FP_DECIMAL: *out = *v; return true;
    case FP_INTEGER: out->u.decimal = (long double)v->u.integer; return true;
    case FP_BOOLEAN: out->u.decimal = v->u.boolean, out->scale = 1; return true;
    case FP_STRING: {
        int scale;
        bool integral;
        int64_t i;
        if (!fp_parse_number(v->u.string, v->len, &out->u.decimal, &scale, &integral, &i))
            return false;
        out->scale = (int16_t)scale;
        return true;
    }
    default: return false;
    }
}

static bool to_temporal(const fp_item *v, fp_kind want, fp_item *out)
{
    if (v->kind == (int)want) {
        *out = *v;
        return true;
    }
    if (want == FP_DATE && v->kind == FP_DATETIME) {
        *out = *v;
        out->kind = FP_DATE;
        if (out->u.dt.precision > FP_PREC_DAY)
            out->u.dt.precision = FP_PREC_DAY;
        out->u.dt.hour = out->u.dt.minute = out->u.dt.second = 0, out->u.dt.ms = 0, out->u.dt.has_tz = false;
        return true;
    }
    if (want == FP_DATETIME && v->kind == FP_DATE) {
        *out = *v;
        out->kind = FP_DATETIME;
        return true;
    }
    if (v->kind != FP_STRING)
        return false;
    fp_datetime dt;
    bool saw_t;
    size_t used = fp_scan_temporal(v->u.string, v->len, want == FP_TIME, &dt, &saw_t);
    if (used == 0 || used != v->len || (want == FP_DATE && saw_t))
        return false;
    memset(out, 0, sizeof *out);
    out->kind = (uint8_t)want;
    out->u.dt = dt;
    return true;
}

static bool to_quantity(fp_ctx *c, const fp_item *v, fp_item *out)
{
    memset(out, 0, sizeof *out);
    out->kind = FP_QUANTITY;
    out->u.quantity.unit = "1";
    out->len = 1;
    switch (v->kind) {
    case FP_QUANTITY: *out = *v; return true;
    case FP_INTEGER: out->u.quantity.value = (long double)v->u.integer; return true;
    case FP_DECIMAL: out->u.quantity.value = v->u.decimal, out->scale = v->scale; return true;
    case FP_BOOLEAN: out->u.quantity.value = v->u.boolean, out->scale = 1; return true;
    case FP_STRING: return fp_parse_quantity(c->arena, v->u.string, v->len, out);
    default: return false;
    }
}

/* toX() and convertsToX(): one conversion, two ways to report it. */
static bool fn_convert(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s, fp_collection *out)
{
    fp_item v, r;
    bool empty;
    if (!single_value(c, n, in, &v, &empty))
        return false;
    if (empty)
        return empty_result(out);
    bool ok;
    switch (n->op) {
    case F_TOBOOLEAN:
    case F_CONVERTSTOBOOLEAN: ok = to_boolean(&v, &r); break;
    case F_TOINTEGER:
    case F_CONVERTSTOINTEGER: ok = to_integer(&v, &r); break;
    case F_TODECIMAL:
    case F_CONVERTSTODECIMAL: ok = to_decimal(&v, &r); break;
    case F_TODATE:
    case F_CONVERTSTODATE: ok = to_temporal(&v, FP_DATE, &r); break;
    case F_TODATETIME:
    case F_CONVERTSTODATETIME: ok = to_temporal(&v, FP_DATETIME, &r); break;
    case F_TOTIME:
    case F_CONVERTSTOTIME: ok = to_temporal(&v, FP_TIME, &r); break;
    case F_TOQUANTITY:
    case F_CONVERTSTOQUANTITY:
        ok = to_quantity(c, &v, &r);
        if (ok && n->argc == 1) { /* toQuantity(unit): convert when the units are comparable */
            fp_item unit;
            bool no_unit;
            if (!arg_string(c, n, 0, s, &unit, &no_unit))
                return false;
            if (!no_unit) {
                fp_item target = r;
                target.u.quantity.unit = unit.u.string;
                target.len = unit.len;
                target.calendar = fp_calendar_unit(unit.u.string, unit.len) != NULL && unit.u.string[0] != '\'';
                long double value;
                ok = fp_quantity_convert(&target, &r, &value);
                target.u.quantity.value = value;
                r = target;
            }
        }
        break;
    default: { /* toString */
        ok = v.kind != FP_TYPEINFO;
        if (ok) {
            char buf[128];
            size_t len = fp_system_text(&v, buf, sizeof buf);
            if (v.kind == FP_STRING) {
                r = v;
            } else {
                char *p = arena_text(c, n, len);
                if (!p)
                    return false;
                memcpy(p, buf, len + 1);
                r = fp_string(p, len);
            }
        }
    }
    }
    bool converts = n->op == F_CONVERTSTOBOOLEAN || n->op == F_CONVERTSTOINTEGER || n->op == F_CONVERTSTODECIMAL ||
                    n->op == F_CONVERTSTODATE || n->op == F_CONVERTSTODATETIME || n->op == F_CONVERTSTOTIME ||
                    n->op == F_CONVERTSTOQUANTITY || n->op == F_CONVERTSTOSTRING;
    if (converts)
        return bool_result(c, n, ok, out);
    return ok ? fpc_single(c, n, &r, out) : empty_result(out);
}

/* ---- strings ------------------------------------------------------------- */

/* Byte offset of the ch-th UTF-8 character (len when beyond the end). */
static size_t utf8_offset(const char *s, size_t len, size_t ch)
{
    size_t i = 0;
    while (i < len && ch > 0) {
        i++;
        while (i < len && ((unsigned char)s[i] & 0xC0) == 0x80)
            i++;
        ch--;
    }
    return i;
}

static size_t utf8_length(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            n++;
    return n;
}

static const char *find_bytes(const char *hay, size_t hlen, const char *needle, size_t nlen)
{
    if (nlen == 0)
        return hay;
    for (size_t i = 0; i + nlen <= hlen; i++)
        if (hay[i] == needle[0] && !memcmp(hay + i, needle, nlen))
            return hay + i;
    return NULL;
}

static bool fn_string_test(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s, fp_collection *out)
{
    fp_item v, a;
    bool e1, e2;
    if (!single_string(c, n, in, &v, &e1) || !arg_string(c, n, 0, s, &a, &e2))
        return false;
    if (e1 || e2)
        return empty_result(out);
    const char *str = v.u.string, *sub = a.u.string;
    size_t len = v.len, sl = a.len;
    switch (n->op) {
    case F_STARTSWITH: return bool_result(c, n, sl <= len && !memcmp(str, sub, sl), out);
    case F_ENDSWITH: return bool_result(c, n, sl <= len && !memcmp(str + len - sl, sub, sl), out);
    case F_CONTAINS: return bool_result(c, n, find_bytes(str, len, sub, sl) != NULL, out);
    default: { /* indexOf */
        const char *at = find_bytes(str, len, sub, sl);
        return int_result(c, n, at ? (int64_t)utf8_length(str, (size_t)(at - str)) : -1, out);
    }
    }
}

static bool fn_substring(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s, fp_collection *out)
{
    fp_item v;
    bool empty, no_start, no_len = true;
    int64_t start, count = INT64_MAX;
    if (!single_string(c, n, in, &v, &empty) || !arg_integer(c, n, 0, s, &start, &no_start))
        return false;
    if (n->argc == 2 && !arg_integer(c, n, 1, s, &count, &no_len))
        return false;
    if (n->argc == 2 && no_len)
        count = INT64_MAX;
    if (empty || no_start)
        return empty_result(out);
    size_t chars = utf8_length(v.u.string, v.len);
    if (start < 0 || (uint64_t)start >= chars)
        return empty_result(out);
    if (count <= 0)
        return string_result(c, n, "", 0, out);
    size_t from = utf8_offset(v.u.string, v.len, (size_t)start);
    size_t to = (uint64_t)count >= chars ? v.len : from + utf8_offset(v.u.string + from, v.len - from, (size_t)count);
    return string_result(c, n, v.u.string + from, to - from, out);
}

static bool fn_case(fp_ctx *c, const fp_ast *n, const fp_collection *in, fp_collection *out)
{
    fp_item v;
    bool empty;
    if (!single_string(c, n, in, &v, &empty))
        return false;
    if (empty)
        return empty_result(out);
    char *p = arena_text(c, n, v.len);
    if (!p)
        return false;
    for (size_t i = 0; i < v.len; i++)
        p[i] = (char)(n->op == F_UPPER ? toupper((unsigned char)v.u.string[i]) : tolower((unsigned char)v.u.string[i]));
    return string_result(c, n, p, v.len, out);
}

/* A growing string in the arena. */
typedef struct abuf {
    char *p;
    size_t len, cap;
    bool oom;
} abuf;

static void ab_add(fp_ctx *c, abuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (!fpa_reserve(c->arena, &b->p, &b->cap, b->len, b->len + n + 1, 1, 64)) {
        b->oom = true;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static bool ab_result(fp_ctx *c, const fp_ast *n, abuf *b, fp_collection *out)
{
    if (b->oom)
        return fp_fail(c, n, "out of memory");
    return string_result(c, n, b->p ? b->p : "", b->len, out);
}

static bool fn_replace(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s, fp_collection *out)
{
    fp_item v, pat, rep;
    bool e1, e2, e3;
    if (!single_string(c, n, in, &v, &e1) || !arg_string(c, n, 0, s, &pat, &e2) || !arg_string(c, n, 1, s, &rep, &e3))
        return false;
    if (e1 || e2 || e3)
        return empty_result(out);
    abuf b = {0};
    if (pat.len == 0) { /* between every character, and at both ends */
        ab_add(c, &b, rep.u.string, rep.len);
        for (size_t i = 0; i < v.len;) {
            size_t next = i + utf8_offset(v.u.string + i, v.len - i, 1);
            ab_add(c, &b, v.u.string + i, next - i);
            ab_add(c, &b, rep.u.string, rep.len);
            i = next;
        }
        return ab_result(c, n, &b, out);
    }
    size_t i = 0;
    for (const char *at; (at = find_bytes(v.u.string + i, v.len - i, pat.u.string, pat.len));) {
        ab_add(c, &b, v.u.string + i, (size_t)(at - v.u.string) - i);
        ab_add(c, &b, rep.u.string, rep.len);
        i = (size_t)(at - v.u.string) + pat.len;
    }
    ab_add(c, &b, v.u.string + i, v.len - i);
    return ab_result(c, n, &b, out);
}

/* The regex of call n: compiled at compile time for a literal pattern, else now into *tmp. */
static bool call_regex(fp_ctx *c, const fp_ast *n, const fp_item *pattern, regex_t *tmp, const regex_t **re)
{
    if (n->regex) {
        *re = n->regex;
        return true;
    }
    int rc = fp_regex_compile(tmp, pattern->u.string, pattern->len, n->op == F_MATCHESFULL);
    if (rc) {
        char msg[120];
        regerror(rc, tmp, msg, sizeof msg);
        return fp_fail(c, n->args[0], "invalid regular expression: %s", msg);
    }
    *re = tmp;
    return true;
}

static bool fn_matches(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s, fp_collection *out)
{
    fp_item v, pat;
    bool e1, e2;
    if (!single_string(c, n, in, &v, &e1) || !arg_string(c, n, 0, s, &pat, &e2))
        return false;
    if (e1 || e2)
        return empty_result(out);
    regex_t tmp;
    const regex_t *re = NULL;
    if (!call_regex(c, n, &pat, &tmp, &re))
        return false;
    char *text = arena_text(c, n, v.len);
    bool ok = text != NULL;
    if (ok) {
        memcpy(text, v.u.string, v.len);
        text[v.len] = '\0';
        ok = bool_result(c, n, regexec(re, text, 0, NULL, 0) == 0, out);
    }
    if (re == &tmp)
        regfree(&tmp);
    return ok;
}

/* Append substitution rep for match m: $1..$9 (and \1..\9) insert groups. */
static void add_substitution(fp_ctx *c, abuf *b, const char *text, const regmatch_t *m, const fp_item *rep)
{
    const char *r = rep->u.string;
    for (size_t i = 0; i < rep->len; i++) {
        if ((r[i] == '$' || r[i] == '\\') && i + 1 < rep->len && r[i + 1] >= '0' && r[i + 1] <= '9') {
            int g = r[++i] - '0';
            if (m[g].rm_so >= 0)
                ab_add(c, b, text + m[g].rm_so, (size_t)(m[g].rm_eo - m[g].rm_so));
            continue;
        }
        ab_add(c, b, r + i, 1);
    }
}

static bool fn_replace_matches(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s,
                               fp_collection *out)
{
    fp_item v, pat, rep;
    bool e1, e2, e3;
    if (!single_string(c, n, in, &v, &e1) || !arg_string(c, n, 0, s, &pat, &e2) || !arg_string(c, n, 1, s, &rep, &e3))
        return false;
    if (e1 || e2 || e3)
        return empty_result(out);
    if (pat.len == 0)
        return string_result(c, n, v.u.string, v.len, out);
    regex_t tmp;
    const regex_t *re = NULL;
    if (!call_regex(c, n, &pat, &tmp, &re))
        return false;
    char *text = arena_text(c, n, v.len);
    bool ok = text != NULL;
    if (ok) {
        memcpy(text, v.u.string, v.len);
        text[v.len] = '\0';
        abuf b = {0};
        size_t at = 0;
        regmatch_t m[10];
        while (at <= v.len && regexec(re, text + at, 10, m, at ? REG_NOTBOL : 0) == 0) {
            ab_add(c, &b, text + at, (size_t)m[0].rm_so);
            add_substitution(c, &b, text + at, m, &rep);
            size_t adv = (size_t)m[0].rm_eo;
            if (m[0].rm_eo == m[0].rm_so) { /* empty match: copy one character and move on */
                if (at + adv >= v.len)
                    break;
                ab_add(c, &b, text + at + adv, 1);
                adv++;
            }
            at += adv;
        }
        if (at < v.len)
            ab_add(c, &b, text + at, v.len - at);
        ok = ab_result(c, n, &b, out);
    }
    if (re == &tmp)
        regfree(&tmp);
    return ok;
}

static bool fn_length(fp_ctx *c, const fp_ast *n, const fp_collection *in, fp_collection *out)
{
    fp_item v;
    bool empty;
    if (!single_string(c, n, in, &v, &empty))
        return false;
    return empty ? empty_result(out) : int_result(c, n, (int64_t)utf8_length(v.u.string, v.len), out);
}

static bool fn_to_chars(fp_ctx *c, const fp_ast *n, const fp_collection *in, fp_collection *out)
{
    fp_item v;
    bool empty;
    if (!single_string(c, n, in, &v, &empty))
        return false;
    size_t cap = 0;
    fpc_empty(out);
    for (size_t i = 0; !empty && i < v.len;) {
        size_t next = i + utf8_offset(v.u.string + i, v.len - i, 1);
        fp_item ch = fp_string(v.u.string + i, next - i);
        fpc_push(c, out, &cap, &ch);
        i = next;
    }
    return true;
}

static bool fn_split(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s, fp_collection *out)
{
    fp_item v, sep;
    bool e1, e2;
    if (!single_string(c, n, in, &v, &e1) || !arg_string(c, n, 0, s, &sep, &e2))
        return false;
    if (e1 || e2)
        return empty_result(out);
    if (sep.len == 0)
        return fn_to_chars(c, n, in, out);
    size_t cap = 0, i = 0;
    fpc_empty(out);
    for (;;) {
        const char *at = find_bytes(v.u.string + i, v.len - i, sep.u.string, sep.len);
        size_t end = at ? (size_t)(at - v.u.string) : v.len;
        fp_item part = fp_string(v.u.string + i, end - i);
        fpc_push(c, out, &cap, &part);
        if (!at)
            return true;
        i = end + sep.len;
    }
}

static bool fn_join(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s, fp_collection *out)
{
    fp_item sep = fp_string("", 0);
    bool no_sep = true;
    if (n->argc == 1 && !arg_string(c, n, 0, s, &sep, &no_sep))
        return false;
    if (no_sep)
        sep = fp_string("", 0);
    abuf b = {0};
    ab_add(c, &b, "", 0);
    for (size_t i = 0; i < in->count; i++) {
        fp_item v;
        if (!fp_to_system(c->schema, &in->items[i], &v) || v.kind != FP_STRING)
            return fp_fail(c, n, "join() expects strings, found a %s", kind_label(&in->items[i]));
        if (i)
            ab_add(c, &b, sep.u.string, sep.len);
        ab_add(c, &b, v.u.string, v.len);
    }
    return ab_result(c, n, &b, out);
}

static bool fn_trim(fp_ctx *c, const fp_ast *n, const fp_collection *in, fp_collection *out)
{
    fp_item v;
    bool empty;
    if (!single_string(c, n, in, &v, &empty))
        return false;
    if (empty)
        return empty_result(out);
    size_t a = 0, b = v.len;
    while (a < b && isspace((unsigned char)v.u.string[a]))
        a++;
    while (b > a && isspace((unsigned char)v.u.string[b - 1]))
        b--;
    return string_result(c, n, v.u.string + a, b - a, out);
}

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void base64_encode(fp_ctx *c, abuf *b, const unsigned char *s, size_t len, const char *alphabet)
{
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)s[i] << 16 | (i + 1 < len ? (unsigned)s[i + 1] << 8 : 0) | (i + 2 < len ? s[i + 2] : 0);
        char q[4] = {alphabet[v >> 18 & 63], alphabet[v >> 12 & 63], i + 1 < len ? alphabet[v >> 6 & 63] : '=',
                     i + 2 < len ? alphabet[v & 63] : '='};
        ab_add(c, b, q, 4);
    }
}

static bool base64_decode(fp_ctx *c, abuf *b, const char *s, size_t len, const char *alphabet)
{
    unsigned v = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '=')
            break;
        const char *p = memchr(alphabet, s[i], 64);
        if (!p)
            return false;
        v = v << 6 | (unsigned)(p - alphabet);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            char ch = (char)(v >> bits & 0xFF);
            ab_add(c, b, &ch, 1);
        }
    }
    return true;
}

static bool fn_encode_decode(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s, fp_collection *out)
{
    fp_item v, fmt;
    bool e1, e2;
    if (!single_string(c, n, in, &v, &e1) || !arg_string(c, n, 0, s, &fmt, &e2))
        return false;
    if (e1 || e2)
        return empty_result(out);
    abuf b = {0};
    ab_add(c, &b, "", 0);
    bool encode = n->op == F_ENCODE;
    const unsigned char *u = (const unsigned char *)v.u.string;
    if (ci_equal(fmt.u.string, fmt.len, "base64") || ci_equal(fmt.u.string, fmt.len, "urlbase64")) {
        const char *alphabet = fmt.len == 6 ? b64_std : b64_url;
        if (encode)
            base64_encode(c, &b, u, v.len, alphabet);
        else if (!base64_decode(c, &b, v.u.string, v.len, alphabet))
            return empty_result(out);
    } else if (ci_equal(fmt.u.string, fmt.len, "hex")) {
        static const char hex[] = "0123456789abcdef";
        for (size_t i = 0; encode && i < v.len; i++) {
            char h[2] = {hex[u[i] >> 4], hex[u[i] & 15]};
            ab_add(c, &b, h, 2);
        }
        for (size_t i = 0; !encode && i + 1 < v.len + (v.len & 1); i += 2) {
            if (!isxdigit(u[i]) || !isxdigit(u[i + 1]))
                return empty_result(out);
            char ch = (char)(strtol((char[]){(char)u[i], (char)u[i + 1], 0}, NULL, 16));
            ab_add(c, &b, &ch, 1);
        }
    } else {
        return fp_fail(c, n->args[0], "unknown encoding '%.*s' (base64, urlbase64 or hex)", (int)fmt.len, fmt.u.string);
    }
    return ab_result(c, n, &b, out);
}

static bool fn_escape(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s, fp_collection *out)
{
    fp_item v, fmt;
    bool e1, e2;
    if (!single_string(c, n, in, &v, &e1) || !arg_string(c, n, 0, s, &fmt, &e2))
        return false;
    if (e1 || e2)
        return empty_result(out);
    bool html = ci_equal(fmt.u.string, fmt.len, "html");
    if (!html && !ci_equal(fmt.u.string, fmt.len, "json"))
        return fp_fail(c, n->args[0], "unknown escape format '%.*s' (html or json)", (int)fmt.len, fmt.u.string);
    static const char *const html_from[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&#39;", "&apos;"};
    static const char html_to[] = "&<>\"''";
    abuf b = {0};
    ab_add(c, &b, "", 0);
    const char *str = v.u.string;
    for (size_t i = 0; i < v.len; i++) {
        char ch = str[i];
        if (n->op == F_ESCAPE) {
            const char *rep = NULL;
            if (html)
                rep = ch == '&'    ? "&amp;"
                      : ch == '<'  ? "&lt;"
                      : ch == '>'  ? "&gt;"
                      : ch == '"'  ? "&quot;"
                      : ch == '\'' ? "&#39;"
                                   : NULL;
            else
                rep = ch == '"'    ? "\\\""
                      : ch == '\\' ? "\\\\"
                      : ch == '\n' ? "\\n"
                      : ch == '\r' ? "\\r"
                      : ch == '\t' ? "\\t"
                                   : NULL;
            if (rep)
                ab_add(c, &b, rep, strlen(rep));
            else
                ab_add(c, &b, &ch, 1);
            continue;
        }
        bool done = false;
        if (html && ch == '&') {
            for (size_t k = 0; k < 6 && !done; k++) {
                size_t l = strlen(html_from[k]);
                if (i + l <= v.len && !memcmp(str + i, html_from[k], l)) {
                    ab_add(c, &b, &html_to[k], 1);
                    i += l - 1;
                    done = true;
                }
            }
        } else if (!html && ch == '\\' && i + 1 < v.len) {
            char e = str[++i];
            char r = e == 'n' ? '\n' : e == 'r' ? '\r' : e == 't' ? '\t' : e == 'b' ? '\b' : e == 'f' ? '\f' : e;
            ab_add(c, &b, &r, 1);
            done = true;
        }
        if (!done)
            ab_add(c, &b, &ch, 1);
    }
    return ab_result(c, n, &b, out);
}

/* ---- math ---------------------------------------------------------------- */

static bool number_input(fp_ctx *c, const fp_ast *n, const fp_collection *in, fp_item *v, bool *empty, bool quantity_ok)
{
    if (!single_value(c, n, in, v, empty))
        return false;
    if (*empty || v->kind == FP_INTEGER || v->kind == FP_DECIMAL || (quantity_ok && v->kind == FP_QUANTITY))
        return true;
    return fp_fail(c, n, "%s() expects a number, not a %s", n->name, kind_label(&in->items[0]));
}

static long double num(const fp_item *v)
{
    return v->kind == FP_INTEGER ? (long double)v->u.integer : v->u.decimal;
}

static bool integral_result(fp_ctx *c, const fp_ast *n, long double v, fp_collection *out)
{
    if (!isfinite(v) || fabsl(v) >= 9.2e18L)
        return empty_result(out);
    return int_result(c, n, (int64_t)v, out);
}

static bool fn_math(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s, fp_collection *out)
{
    fp_item v;
    bool empty;
    if (!number_input(c, n, in, &v, &empty, n->op == F_ABS))
        return false;
    if (empty)
        return empty_result(out);
    long double x = v.kind == FP_QUANTITY ? v.u.quantity.value : num(&v);
    switch (n->op) {
    case F_ABS:
        if (v.kind == FP_INTEGER)
            return v.u.integer == INT64_MIN ? empty_result(out) : int_result(c, n, llabs(v.u.integer), out);
        if (v.kind == FP_QUANTITY) {
            v.u.quantity.value = fabsl(x);
            return fpc_single(c, n, &v, out);
        }
        return decimal_result(c, n, fabsl(x), v.scale, out);
    case F_CEILING: return integral_result(c, n, ceill(x), out);
    case F_FLOOR: return integral_result(c, n, floorl(x), out);
    case F_TRUNCATE: return integral_result(c, n, truncl(x), out);
    case F_EXP: return decimal_result(c, n, expl(x), fp_natural_scale(expl(x), 0), out);
    case F_LN: return x <= 0 ? empty_result(out) : decimal_result(c, n, logl(x), fp_natural_scale(logl(x), 0), out);
    case F_SQRT: return x < 0 ? empty_result(out) : decimal_result(c, n, sqrtl(x), fp_natural_scale(sqrtl(x), 0), out);
    case F_LOG: {
        fp_item base;
        bool eb;
        fp_collection a;
        if (!arg(c, n, 0, s, &a) || !number_input(c, n->args[0], &a, &base, &eb, false))
            return false;
        if (eb || x <= 0 || num(&base) <= 0 || num(&base) == 1)
            return empty_result(out);
        long double r = logl(x) / logl(num(&base));
        return decimal_result(c, n, r, fp_natural_scale(r, 0), out);
    }
    case F_POWER: {
        fp_item e;
        bool ee;
        fp_collection a;
        if (!arg(c, n, 0, s, &a) || !number_input(c, n->args[0], &a, &e, &ee, false))
            return false;
        if (ee)
            return empty_result(out);
        if (v.kind == FP_INTEGER && e.kind == FP_INTEGER && e.u.integer >= 0) {
            int64_t r = 1, b = v.u.integer;
            for (int64_t k = 0; k < e.u.integer; k++)
                if (__builtin_mul_overflow(r, b, &r))
                    return empty_result(out);
            return int_result(c, n, r, out);
        }
        long double r = powl(x, num(&e));
        return decimal_result(c, n, r, fp_natural_scale(r, v.kind == FP_DECIMAL ? v.scale : 0), out);
    }
    default: { /* round */
        int64_t digits = 0;
        bool no_digits = true;
        if (n->argc == 1 && !arg_integer(c, n, 0, s, &digits, &no_digits))
            return false;
        if (no_digits)
            digits = 0;
        if (digits < 0)
            return fp_fail(c, n->args[0], "round() needs a precision of 0 or more");
        if (digits > 18)
            digits = 18;
        return decimal_result(c, n, fp_round_to(x, (int)digits), (int)digits, out);
    }
    }
}

/* ---- tree navigation ----------------------------------------------------- */

static bool fn_children(fp_ctx *c, const fp_ast *n, const fp_collection *in, fp_collection *out)
{
    size_t cap = 0;
    fpc_empty(out);
    for (size_t i = 0; i < in->count; i++)
        fp_members(c, &in->items[i], NULL, 0, out, &cap);
    if (n->op == F_CHILDREN)
        return true;
    /* descendants(): children, breadth first, until there are none (a tree: no repeats). */
    for (size_t i = 0; i < out->count; i++) {
        fp_item it = out->items[i];
        fp_members(c, &it, NULL, 0, out, &cap);
        if (out->count > FP_MAX_REPEAT_ITEMS)
            return fp_fail(c, n, "descendants() produced more than %u items", FP_MAX_REPEAT_ITEMS);
        if (fpa_failed(c->arena))
            return fp_fail(c, n, "out of memory");
    }
    return true;
}

/* ---- utility ------------------------------------------------------------- */

static bool fn_trace(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s, fp_collection *out)
{
    if (c->env->trace) {
        fp_item name;
        bool empty;
        if (!arg_string(c, n, 0, s, &name, &empty))
            return false;
        fp_collection shown = *in;
        if (n->argc == 2) {
            fp_scope inner = *s;
            inner.focus = inner.this_ = in;
            if (!fp_eval(c, n->args[1], &inner, &shown))
                return false;
        }
        c->env->trace(c->env->trace_ctx, empty ? "" : name.u.string, empty ? 0 : name.len, &shown);
    }
    *out = *in;
    return true;
}

static bool fn_now(fp_ctx *c, const fp_ast *n, fp_collection *out)
{
    if (!c->now_known) {
        fp_clock_now(&c->now);
        c->now_known = true;
    }
    fp_item it = {.kind = FP_DATETIME};
    it.u.dt = c->now;
    if (n->op == F_TODAY) {
        it.kind = FP_DATE;
        it.u.dt.precision = FP_PREC_DAY;
        it.u.dt.hour = it.u.dt.minute = it.u.dt.second = 0, it.u.dt.ms = 0, it.u.dt.has_tz = false;
    } else if (n->op == F_TIMEOFDAY) {
        it.kind = FP_TIME;
        it.u.dt.year = 0, it.u.dt.month = it.u.dt.day = 0, it.u.dt.has_tz = false;
    }
    return fpc_single(c, n, &it, out);
}

static bool fn_not(fp_ctx *c, const fp_ast *n, const fp_collection *in, fp_collection *out)
{
    int t = fp_truth3(c, n, in);
    if (t == -2)
        return false;
    return t < 0 ? empty_result(out) : bool_result(c, n, !t, out);
}

/* ---- types --------------------------------------------------------------- */

static bool fn_is_as(fp_ctx *c, const fp_ast *n, const fp_collection *in, fp_collection *out)
{
    if (in->count == 0)
        return empty_result(out);
    if (in->count > 1 && n->op == F_AS && c->env->lenient)
        return fn_of_type(c, n, in, out);
    if (in->count > 1)
        return fp_fail(c, n, "%s() expects a single item, got %zu", n->name, in->count);
    bool is = fp_item_is(c->schema, c->env->lenient, &in->items[0], &n->type);
    if (n->op == F_IS)
        return bool_result(c, n, is, out);
    if (!is)
        return empty_result(out);
    *out = *in;
    return true;
}

static bool fn_type(fp_ctx *c, const fp_ast *n, const fp_collection *in, fp_collection *out)
{
    static const char *const system_names[] = {"",     "Boolean",  "Integer", "Decimal",  "String",
                                               "Date", "DateTime", "Time",    "Quantity", "TypeInfo"};
    size_t cap = 0;
    fpc_empty(out);
    for (size_t i = 0; i < in->count; i++) {
        const fp_item *x = &in->items[i];
        fp_item t = {.kind = FP_TYPEINFO};
        if (x->kind == FP_NODE) {
            t.u.typeinfo.ns = "FHIR";
            t.u.typeinfo.name = x->u.node.type ? x->u.node.type->name : "Element";
        } else {
            t.u.typeinfo.ns = "System";
            t.u.typeinfo.name = system_names[x->kind];
        }
        fpc_push(c, out, &cap, &t);
    }
    return true;
}

/* ---- sort and aggregate -------------------------------------------------- */

typedef struct sort_entry {
    const fp_item *item;
    const fp_item *keys; /* one per criterion; kind 0xFF = empty */
} sort_entry;

typedef struct sort_ctx {
    fp_ctx *c;
    unsigned nkeys;
    const bool *descending;
} sort_ctx;

static int compare_entries(const sort_ctx *sc, const sort_entry *a, const sort_entry *b)
{
    for (unsigned k = 0; k < sc->nkeys; k++) {
        const fp_item *x = &a->keys[k], *y = &b->keys[k];
        int sign;
        bool ex = x->kind == 0xFF, ey = y->kind == 0xFF;
        if (ex || ey)
            sign = ex == ey ? 0 : ex ? -1 : 1; /* empty sorts first */
        else if (fp_compare_items(sc->c->schema, x, y, &sign, 0) != FP_CMP_OK)
            sign = 0;
        if (sign)
            return sc->descending[k] ? -sign : sign;
    }
    return 0;
}

/* Stable merge sort (qsort is not stable and takes no context). */
static void merge_sort(const sort_ctx *sc, sort_entry *v, sort_entry *tmp, size_t n)
{
    if (n < 2)
        return;
    size_t h = n / 2;
    merge_sort(sc, v, tmp, h);
    merge_sort(sc, v + h, tmp, n - h);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = compare_entries(sc, &v[j], &v[i]) < 0 ? v[j++] : v[i++];
    while (i < h)
        tmp[k++] = v[i++];
    while (j < n)
        tmp[k++] = v[j++];
    memcpy(v, tmp, n * sizeof *v);
}

static bool fn_sort(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s, fp_collection *out)
{
    if (in->count < 2) {
        *out = *in;
        return true;
    }
    unsigned nkeys = n->argc ? n->argc : 1;
    sort_entry *v = fpa_alloc(c->arena, in->count * 2 * sizeof *v);
    fp_item *keys = fpa_alloc(c->arena, in->count * nkeys * sizeof *keys);
    bool desc[8] = {false};
    if (!v || !keys)
        return fp_fail(c, n, "out of memory");
    for (size_t i = 0; i < in->count; i++) {
        v[i].item = &in->items[i];
        v[i].keys = keys + i * nkeys;
        for (unsigned k = 0; k < nkeys; k++) {
            fp_item *key = &keys[i * nkeys + k];
            fp_collection r = {&in->items[i], 1};
            if (n->argc) {
                /* A leading '-' on a criterion means descending order, not negation. */
                const fp_ast *crit = n->args[k];
                desc[k] = crit->kind == A_NEGATE;
                fp_collection one = {&in->items[i], 1};
                fp_scope inner = {.focus = &one, .this_ = &one, .index = (int64_t)i, .total = s->total};
                if (!fp_eval(c, desc[k] ? crit->target : crit, &inner, &r))
                    return false;
            }
            if (r.count > 1)
                return fp_fail(c, n, "sort() criteria must give one item per element, got %zu", r.count);
            if (r.count == 0 || !fp_to_system(c->schema, &r.items[0], key))
                key->kind = 0xFF;
        }
    }
    sort_ctx sc = {c, nkeys, desc};
    merge_sort(&sc, v, v + in->count, in->count);
    size_t cap = 0;
    fpc_empty(out);
    for (size_t i = 0; i < in->count; i++)
        fpc_push(c, out, &cap, v[i].item);
    return true;
}

static bool fn_aggregate(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s, fp_collection *out)
{
    fp_collection total = {NULL, 0};
    if (n->argc == 2 && !arg(c, n, 1, s, &total))
        return false;
    for (size_t i = 0; i < in->count; i++) {
        fp_collection one = {&in->items[i], 1}, next;
        fp_scope inner = {.focus = &one, .this_ = &one, .index = (int64_t)i, .total = &total};
        if (!fp_eval(c, n->args[0], &inner, &next))
            return false;
        total = next;
    }
    *out = total;
    return true;
}

/* ---- precision and boundaries -------------------------------------------- */

static __int128 pow10_i128(int n)
{
    __int128 r = 1;
    while (n-- > 0)
        r *= 10;
    return r;
}

/* The lowest/highest decimal that rounds to v at its scale, cut to `digits` places. */
static bool decimal_boundary(long double v, int scale, int digits, bool high, long double *out)
{
    if (digits < 0 || digits > 18 || scale > 17 || !(fabsl(v) < 1e18L))
        return false;
    __int128 m = (__int128)roundl(v * fp_pow10(scale));
    __int128 b = m * 10 + (high ? 5 : -5); /* at scale + 1 */
    int bs = scale + 1;
    if (digits >= bs) {
        b *= pow10_i128(digits - bs);
    } else {
        __int128 d = pow10_i128(bs - digits), q = b / d, r = b % d;
        if (r != 0 && ((r > 0) == high)) /* floor for low, ceiling for high */
            q += high ? 1 : -1;
        b = q;
    }
    *out = (long double)b / fp_pow10(digits);
    return true;
}

static bool fn_boundary(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s, fp_collection *out)
{
    fp_item v;
    bool empty, no_digits = true;
    int64_t digits = -1;
    if (!single_value(c, n, in, &v, &empty))
        return false;
    if (n->argc == 1 && !arg_integer(c, n, 0, s, &digits, &no_digits))
        return false;
    if (empty)
        return empty_result(out);
    bool high = n->op == F_HIGHBOUNDARY;
    switch (v.kind) {
    case FP_INTEGER:
    case FP_DECIMAL:
    case FP_QUANTITY: {
        long double x = v.kind == FP_QUANTITY ? v.u.quantity.value : num(&v), r;
        int scale = v.kind == FP_INTEGER ? 0 : v.scale;
        int d = no_digits ? 8 : (int)(digits > 100 ? 100 : digits < -1 ? -1 : digits);
        if (!decimal_boundary(x, scale, d, high, &r))
            return empty_result(out);
        if (v.kind == FP_QUANTITY) {
            v.u.quantity.value = r;
            v.scale = (int16_t)d;
            return fpc_single(c, n, &v, out);
        }
        return decimal_result(c, n, r, d, out);
    }
    case FP_DATE:
    case FP_DATETIME:
    case FP_TIME: {
        int d = no_digits ? fp_temporal_digits((fp_kind)v.kind, FP_PREC_MS) : (int)digits;
        if (no_digits && v.kind == FP_DATE)
            d = 8;
        fp_item r = v;
        if (digits > 100 || !fp_boundary_temporal((fp_kind)v.kind, &v.u.dt, d, high, &r.u.dt))
            return empty_result(out);
        if (v.kind == FP_DATETIME && r.u.dt.precision <= FP_PREC_DAY)
            r.u.dt.has_tz = false;
        return fpc_single(c, n, &r, out);
    }
    default: return fp_fail(c, n, "%s() cannot be applied to a %s", n->name, kind_label(&v));
    }
}

static bool fn_precision(fp_ctx *c, const fp_ast *n, const fp_collection *in, fp_collection *out)
{
    fp_item v;
    bool empty;
    if (!single_value(c, n, in, &v, &empty))
        return false;
    if (empty)
        return empty_result(out);
    switch (v.kind) {
    case FP_INTEGER: return int_result(c, n, 0, out);
    case FP_DECIMAL:
    case FP_QUANTITY: return int_result(c, n, v.scale, out);
    case FP_DATE:
    case FP_DATETIME:
    case FP_TIME: return int_result(c, n, fp_temporal_digits((fp_kind)v.kind, v.u.dt.precision), out);
    default: return fp_fail(c, n, "precision() cannot be applied to a %s", kind_label(&v));
    }
}

static bool fn_comparable(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s, fp_collection *out)
{
    fp_item a, b;
    bool e1, e2;
    if (!single_value(c, n, in, &a, &e1) || !arg_value(c, n, 0, s, &b, &e2))
        return false;
    if (e1 || e2)
        return empty_result(out);
    if (a.kind != FP_QUANTITY || b.kind != FP_QUANTITY)
        return fp_fail(c, n, "comparable() compares two quantities");
    long double bv;
    return bool_result(c, n, fp_quantity_convert(&a, &b, &bv), out);
}

/* ---- FHIR ---------------------------------------------------------------- */

static bool string_is(const fp_item *it, const char *s, size_t len)
{
    return it->kind == FP_STRING && it->len == len && !memcmp(it->u.string, s, len);
}

static bool fn_extension(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s, fp_collection *out)
{
    fp_item url;
    bool empty;
    if (!arg_string(c, n, 0, s, &url, &empty))
        return false;
    if (empty)
        return empty_result(out);
    size_t cap = 0, ext_cap = 0;
    fpc_empty(out);
    fp_collection exts = {NULL, 0};
    for (size_t i = 0; i < in->count; i++)
        fp_members(c, &in->items[i], "extension", 9, &exts, &ext_cap);
    for (size_t i = 0; i < exts.count; i++) {
        fp_collection u = {NULL, 0};
        size_t ucap = 0;
        fp_members(c, &exts.items[i], "url", 3, &u, &ucap);
        fp_item v;
        if (u.count == 1 && fp_to_system(c->schema, &u.items[0], &v) && string_is(&v, url.u.string, url.len))
            fpc_push(c, out, &cap, &exts.items[i]);
    }
    return true;
}

static bool has_primitive_value(const fp_item *it)
{
    if (it->kind != FP_NODE)
        return it->kind != FP_TYPEINFO;
    uint32_t i = it->u.node.index;
    if (i == FP_NO_NODE)
        return false;
    uint8_t t = it->u.node.doc->nodes[i].type;
    return t != FJ_OBJECT && t != FJ_ARRAY && t != FJ_NULL;
}

static bool fn_has_value(fp_ctx *c, const fp_ast *n, const fp_collection *in, fp_collection *out)
{
    bool has = in->count == 1 && has_primitive_value(&in->items[0]);
    if (n->op == F_HASVALUE)
        return bool_result(c, n, has, out);
    fp_item v;
    if (!has || !fp_to_system(c->schema, &in->items[0], &v))
        return empty_result(out);
    return fpc_single(c, n, &v, out);
}

/* The string value of member `key` of object obj, or NULL. */
static const char *member_string(const fj_doc *d, uint32_t obj, const char *key, size_t *len)
{
    uint32_t v = fj_get(d, obj, key);
    if (v == UINT32_MAX || d->nodes[v].type != FJ_STRING)
        return NULL;
    *len = d->nodes[v].len;
    return fj_str(d, v);
}

static bool span_eq(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && !memcmp(a, b, alen);
}

/* A resource node that ref's Type/id names (relative or absolute, a _history suffix ignored). */
static bool resource_matches(const fj_doc *d, uint32_t res, const char *ref, size_t len)
{
    fr_parts parts;
    if (res == FP_NO_NODE || d->nodes[res].type != FJ_OBJECT || !fr_parse(ref, len, &parts))
        return false;
    size_t tlen, idlen;
    const char *rt = member_string(d, res, "resourceType", &tlen), *id = member_string(d, res, "id", &idlen);
    return rt && id && span_eq(rt, tlen, parts.type, parts.type_len) && span_eq(id, idlen, parts.id, parts.id_len);
}

/* Resolve a reference: "#id" among %resource's contained, else in the Bundle around it. */
static uint32_t resolve_reference(fp_ctx *c, const char *ref, size_t len)
{
    const fj_doc *d = c->env->doc;
    uint32_t res = c->env->resource;
    if (!d || len == 0)
        return FP_NO_NODE;
    if (ref[0] == '#') {
        if (res == FP_NO_NODE || d->nodes[res].type != FJ_OBJECT)
            return FP_NO_NODE;
        if (len == 1)
            return res;
        uint32_t contained = fj_get(d, res, "contained");
        if (contained == UINT32_MAX || d->nodes[contained].type != FJ_ARRAY)
            return FP_NO_NODE;
        uint32_t e = contained + 1;
        for (uint32_t i = 0; i < d->nodes[contained].len; i++, e = fj_next(d, e)) {
            size_t idlen;
            const char *id = d->nodes[e].type == FJ_OBJECT ? member_string(d, e, "id", &idlen) : NULL;
            if (id && span_eq(id, idlen, ref + 1, len - 1))
                return e;
        }
        return FP_NO_NODE;
    }
    uint32_t bundles[3] = {c->env->root_resource, res, 0};
    for (int b = 0; b < 3; b++) {
        uint32_t bundle = bundles[b];
        size_t tl;
        const char *rt;
        if (bundle == FP_NO_NODE || bundle >= d->count || d->nodes[bundle].type != FJ_OBJECT ||
            !(rt = member_string(d, bundle, "resourceType", &tl)) || !span_eq(rt, tl, "Bundle", 6))
            continue;
        uint32_t entries = fj_get(d, bundle, "entry");
        if (entries == UINT32_MAX || d->nodes[entries].type != FJ_ARRAY)
            continue;
        uint32_t match = FP_NO_NODE, e = entries + 1;
        for (uint32_t i = 0; i < d->nodes[entries].len; i++, e = fj_next(d, e)) {
            if (d->nodes[e].type != FJ_OBJECT)
                continue;
            uint32_t r = fj_get(d, e, "resource");
            size_t fl;
            const char *full = member_string(d, e, "fullUrl", &fl);
            if (r == UINT32_MAX)
                continue;
            if (full && span_eq(full, fl, ref, len))
                return r;
            if (match == FP_NO_NODE && resource_matches(d, r, ref, len))
                match = r;
        }
        if (match != FP_NO_NODE)
            return match;
    }
    return resource_matches(d, res, ref, len) ? res : FP_NO_NODE;
}

static bool fn_resolve(fp_ctx *c, const fp_ast *n, const fp_collection *in, fp_collection *out)
{
    size_t cap = 0;
    fpc_empty(out);
    for (size_t i = 0; i < in->count; i++) {
        const fp_item *it = &in->items[i];
        fp_item ref;
        if (it->kind == FP_NODE && it->u.node.index != FP_NO_NODE &&
            it->u.node.doc->nodes[it->u.node.index].type == FJ_OBJECT) {
            fp_collection r = {NULL, 0};
            size_t rcap = 0;
            fp_members(c, it, "reference", 9, &r, &rcap);
            if (r.count != 1 || !fp_to_system(c->schema, &r.items[0], &ref))
                continue;
        } else if (!fp_to_system(c->schema, it, &ref)) {
            continue;
        }
        if (ref.kind != FP_STRING || !c->env->doc)
            continue;
        uint32_t target = resolve_reference(c, ref.u.string, ref.len);
        if (target != FP_NO_NODE) {
            fp_item r = fp_node_item(c->schema, c->env->doc, target, FP_NO_NODE, NULL, NULL);
            fpc_push(c, out, &cap, &r);
        }
    }
    return true;
}

static bool fn_conforms_to(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s, fp_collection *out)
{
    static const char base[] = "http://hl7.org/fhir/StructureDefinition/";
    fp_item url;
    bool empty;
    if (!arg_string(c, n, 0, s, &url, &empty))
        return false;
    if (empty || in->count == 0)
        return empty_result(out);
    if (in->count > 1)
        return fp_fail(c, n, "conformsTo() expects a single item, got %zu", in->count);
    size_t bl = sizeof base - 1;
    const fs_type *t = url.len > bl && !memcmp(url.u.string, base, bl)
                           ? fs_type_by_name(c->schema, url.u.string + bl, url.len - bl)
                           : NULL;
    if (!t)
        return fp_fail(c, n->args[0], "conformsTo(): unknown profile '%.*s' (only the core definitions are known)",
                       (int)url.len, url.u.string);
    const fp_item *it = &in->items[0];
    return bool_result(c, n, it->kind == FP_NODE && fp_type_is_a(c->schema, it->u.node.type, t), out);
}

static int default_member_of(const fs_schema *schema, const char *url, const char *system, size_t slen,
                             const char *code, size_t clen)
{
    const fs_valueset *vs = fs_valueset_by_url(schema, url);
    if (!vs)
        return -1;
    return fs_valueset_contains(schema, vs, system, slen, code, clen);
}

static int member_of(fp_ctx *c, const char *url, const char *system, size_t slen, const char *code, size_t clen)
{
    if (c->env->member_of)
        return c->env->member_of(c->env->member_of_ctx, url, system, slen, code, clen);
    return default_member_of(c->schema, url, system, slen, code, clen);
}

/* A Coding node's membership: 1, 0 or -1 (cannot tell). */
static int coding_member_of(fp_ctx *c, const fp_item *coding, const char *url)
{
    const fj_doc *d = coding->u.node.doc;
    size_t sl = 0, cl;
    const char *sys = member_string(d, coding->u.node.index, "system", &sl);
    const char *code = member_string(d, coding->u.node.index, "code", &cl);
    if (!code)
        return -1;
    return member_of(c, url, sys, sl, code, cl);
}

static bool fn_member_of(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s, fp_collection *out)
{
    fp_item url;
    bool empty;
    if (!arg_string(c, n, 0, s, &url, &empty))
        return false;
    if (empty || in->count == 0)
        return empty_result(out);
    if (in->count > 1)
        return fp_fail(c, n, "memberOf() expects a single item, got %zu", in->count);
    const char *u = fpa_strndup(c->arena, url.u.string, url.len);
    if (!u)
        return fp_fail(c, n, "out of memory");
    const fp_item *it = &in->items[0];
    const char *tname = fp_item_type_name(it);
    int r = -1;
    fp_item v;
    if (it->kind == FP_NODE && it->u.node.index != FP_NO_NODE &&
        it->u.node.doc->nodes[it->u.node.index].type == FJ_OBJECT) {
        if (tname && !strcmp(tname, "Coding")) {
            r = coding_member_of(c, it, u);
        } else if (tname && !strcmp(tname, "CodeableConcept")) {
            fp_collection codings = {NULL, 0};
            size_t cap = 0;
            fp_members(c, it, "coding", 6, &codings, &cap);
            for (size_t i = 0; i < codings.count && r != 1; i++) {
                int m = coding_member_of(c, &codings.items[i], u);
                if (m == 1 || (m == 0 && r == -1))
                    r = m;
            }
        }
    } else if (fp_to_system(c->schema, it, &v) && v.kind == FP_STRING) {
        r = member_of(c, u, NULL, 0, v.u.string, v.len);
    }
    return r < 0 ? empty_result(out) : bool_result(c, n, r == 1, out);
}

/* ---- dispatch ------------------------------------------------------------ */

bool fp_call(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s, fp_collection *out)
{
    switch ((fp_fn)n->op) {
    case F_EMPTY: return bool_result(c, n, in->count == 0, out);
    case F_EXISTS: return fn_exists(c, n, in, s, out);
    case F_ALL: return fn_all(c, n, in, s, out);
    case F_ALLTRUE:
    case F_ANYTRUE:
    case F_ALLFALSE:
    case F_ANYFALSE: return fn_bool_aggregate(c, n, in, out);
    case F_SUBSETOF:
    case F_SUPERSETOF: {
        fp_collection other;
        if (!arg(c, n, 0, s, &other))
            return false;
        return bool_result(c, n, n->op == F_SUBSETOF ? subset(c, in, &other) : subset(c, &other, in), out);
    }
    case F_COUNT: return int_result(c, n, (int64_t)in->count, out);
    case F_DISTINCT:
    case F_ISDISTINCT: return fn_distinct(c, n, in, out);
    case F_WHERE: return fn_where(c, n, in, s, out);
    case F_SELECT: return fn_select(c, n, in, s, out);
    case F_REPEAT: return fn_repeat(c, n, in, s, out);
    case F_OFTYPE: return fn_of_type(c, n, in, out);
    case F_SINGLE:
        if (in->count > 1)
            return fp_fail(c, n, "single() found %zu items", in->count);
        *out = *in;
        return true;
    case F_FIRST: return slice(in, 0, 1, out);
    case F_LAST: return in->count ? slice(in, in->count - 1, 1, out) : empty_result(out);
    case F_TAIL: return slice(in, 1, in->count, out);
    case F_SKIP:
    case F_TAKE: return fn_skip_take(c, n, in, s, out);
    case F_INTERSECT:
    case F_EXCLUDE: return fn_intersect_exclude(c, n, in, s, out);
    case F_UNION:
    case F_COMBINE: return fn_combine(c, n, in, s, out);
    case F_IIF: return fn_iif(c, n, in, s, out);
    case F_TOBOOLEAN:
    case F_CONVERTSTOBOOLEAN:
    case F_TOINTEGER:
    case F_CONVERTSTOINTEGER:
    case F_TODECIMAL:
    case F_CONVERTSTODECIMAL:
    case F_TOSTRING:
    case F_CONVERTSTOSTRING:
    case F_TODATE:
    case F_CONVERTSTODATE:
    case F_TODATETIME:
    case F_CONVERTSTODATETIME:
    case F_TOTIME:
    case F_CONVERTSTOTIME:
    case F_TOQUANTITY:
    case F_CONVERTSTOQUANTITY: return fn_convert(c, n, in, s, out);
    case F_INDEXOF:
    case F_STARTSWITH:
    case F_ENDSWITH:
    case F_CONTAINS: return fn_string_test(c, n, in, s, out);
    case F_SUBSTRING: return fn_substring(c, n, in, s, out);
    case F_UPPER:
    case F_LOWER: return fn_case(c, n, in, out);
    case F_REPLACE: return fn_replace(c, n, in, s, out);
    case F_MATCHES:
    case F_MATCHESFULL: return fn_matches(c, n, in, s, out);
    case F_REPLACEMATCHES: return fn_replace_matches(c, n, in, s, out);
    case F_LENGTH: return fn_length(c, n, in, out);
    case F_TOCHARS: return fn_to_chars(c, n, in, out);
    case F_SPLIT: return fn_split(c, n, in, s, out);
    case F_JOIN: return fn_join(c, n, in, s, out);
    case F_TRIM: return fn_trim(c, n, in, out);
    case F_ENCODE:
    case F_DECODE: return fn_encode_decode(c, n, in, s, out);
    case F_ESCAPE:
    case F_UNESCAPE: return fn_escape(c, n, in, s, out);
    case F_ABS:
    case F_CEILING:
    case F_EXP:
    case F_FLOOR:
    case F_LN:
    case F_LOG:
    case F_POWER:
    case F_ROUND:
    case F_SQRT:
    case F_TRUNCATE: return fn_math(c, n, in, s, out);
    case F_CHILDREN:
    case F_DESCENDANTS: return fn_children(c, n, in, out);
    case F_TRACE: return fn_trace(c, n, in, s, out);
    case F_NOW:
    case F_TIMEOFDAY:
    case F_TODAY: return fn_now(c, n, out);
    case F_NOT: return fn_not(c, n, in, out);
    case F_IS:
    case F_AS: return fn_is_as(c, n, in, out);
    case F_TYPE: return fn_type(c, n, in, out);
    case F_SORT: return fn_sort(c, n, in, s, out);
    case F_AGGREGATE: return fn_aggregate(c, n, in, s, out);
    case F_LOWBOUNDARY:
    case F_HIGHBOUNDARY: return fn_boundary(c, n, in, s, out);
    case F_PRECISION: return fn_precision(c, n, in, out);
    case F_COMPARABLE: return fn_comparable(c, n, in, s, out);
    case F_EXTENSION: return fn_extension(c, n, in, s, out);
    case F_HASVALUE:
    case F_GETVALUE: return fn_has_value(c, n, in, out);
    case F_RESOLVE: return fn_resolve(c, n, in, out);
    case F_CONFORMSTO: return fn_conforms_to(c, n, in, s, out);
    case F_MEMBEROF: return fn_member_of(c, n, in, s, out);
    case F_SUBSUMES:
    case F_SUBSUMEDBY: return empty_result(out); /* needs a terminology server: unknown */
    case F_HTMLCHECKS: return bool_result(c, n, true, out);
    case F_HOST: return fp_call_host(c, n, in, s, out);
    default: return fp_fail(c, n, "internal error: function %s not implemented", n->name);
    }
}
