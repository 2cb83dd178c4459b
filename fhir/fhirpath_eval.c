/*
 * fhir/fhirpath_eval.c — the tree walk: navigation over the JSON tree with
 * schema types, operators (three-valued logic, equality, ordering,
 * arithmetic on numbers, strings, dates and quantities), type tests, and
 * the public entry points.
 *
 * Every collection is built in the caller's arena and never written after
 * it is complete, so collections may share items freely: a literal's
 * result points at the AST, $this points into its input, a variable's value
 * at the caller's array.
 *
 * Navigation: a node item knows its FHIR type and defining element. A name
 * is looked up among the element's (or type's) children as fs_lookup does
 * for the validator; a choice element is matched through its typed JSON key
 * (value -> valueQuantity, typed Quantity); a primitive's `_name` companion
 * travels with the value so that extension() and id work on primitives.
 */
#include "fhir/fhirpath_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- collections ---------------------------------------------------------- */

void fpc_push(fp_ctx *c, fp_collection *coll, size_t *cap, const fp_item *it)
{
    if (coll->count == *cap &&
        !fpa_reserve(c->arena, &coll->items, cap, coll->count, coll->count + 1, sizeof *coll->items, 4))
        return; /* reported as "out of memory" when the evaluation ends */
    coll->items[coll->count++] = *it;
}

bool fpc_single(fp_ctx *c, const fp_ast *n, const fp_item *it, fp_collection *out)
{
    fp_item *slot = fpa_alloc(c->arena, sizeof *slot);
    if (!slot)
        return fp_fail(c, n, "out of memory");
    *slot = *it;
    out->items = slot;
    out->count = 1;
    return true;
}

bool fp_fail(fp_ctx *c, const fp_ast *n, const char *fmt, ...)
{
    if (c->err->message[0])
        return false; /* keep the first (innermost) error */
    int pos = 0;
    const char *src = c->expr->source;
    for (uint32_t i = 0; i < n->pos && src[i]; i++)
        if (((unsigned char)src[i] & 0xC0) != 0x80)
            pos++;
    c->err->position = pos;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err->message, sizeof c->err->message, fmt, ap);
    va_end(ap);
    return false;
}

/* ---- types --------------------------------------------------------------- */

bool fp_type_is_a(const fs_schema *s, const fs_type *t, const fs_type *base)
{
    for (; t; t = t->base == FS_NONE ? NULL : &s->types[t->base])
        if (t == base)
            return true;
    return false;
}

bool fp_item_is(const fs_schema *s, bool lenient, const fp_item *it, const fp_typespec *ts)
{
    if (it->kind != FP_NODE)
        return ts->system == it->kind;
    if (ts->fhir && fp_type_is_a(s, it->u.node.type, ts->fhir))
        return true;
    fp_item v;
    return lenient && ts->system >= 0 && it->u.node.type && it->u.node.type->kind == FS_PRIMITIVE &&
           fp_to_system(s, it, &v) && v.kind == ts->system;
}

const char *fp_item_type_name(const fp_item *it)
{
    return it->kind == FP_NODE && it->u.node.type ? it->u.node.type->name : NULL;
}

/* ---- navigation ---------------------------------------------------------- */

fp_item fp_node_item(const fs_schema *s, const fj_doc *d, uint32_t index, uint32_t ext, const fs_type *type,
                     const fs_element *element)
{
    if (index != FP_NO_NODE && d->nodes[index].type == FJ_OBJECT && (!type || type->kind == FS_RESOURCE)) {
        uint32_t rt = fj_get(d, index, "resourceType");
        if (rt != UINT32_MAX && d->nodes[rt].type == FJ_STRING) {
            const fs_type *t = fs_type_by_name(s, fj_str(d, rt), d->nodes[rt].len);
            if (t)
                type = t;
        }
    }
    fp_item it = {.kind = FP_NODE};
    it.u.node.doc = d;
    it.u.node.index = index;
    it.u.node.ext = ext;
    it.u.node.type = type;
    it.u.node.element = element;
    return it;
}

fp_item fp_node(const fs_schema *schema, const fj_doc *doc, uint32_t index, const fs_type *type,
                const fs_element *element)
{
    return fp_node_item(schema ? schema : fs_r4(), doc, index, FP_NO_NODE, type, element);
}

/* The schema children that apply to a node item: an inline backbone's own, else its type's. */
static const fs_element *item_kids(const fs_schema *s, const fp_item *it, unsigned *n)
{
    const fs_element *el = it->u.node.element;
    if (el && (el->flags & FS_EL_INLINE))
        return fs_children(s, el, n);
    if (it->u.node.type)
        return fs_children(s, &s->elements[it->u.node.type->root], n);
    *n = 0;
    return NULL;
}

static bool key_is(const fj_doc *d, uint32_t key, const char *prefix, const char *name, size_t len)
{
    size_t pl = prefix ? strlen(prefix) : 0;
    return d->nodes[key].len == pl + len && (!pl || !memcmp(fj_str(d, key), prefix, pl)) &&
           !memcmp(fj_str(d, key) + pl, name, len);
}

/* The value of member "_" + key in obj, or FP_NO_NODE. */
static uint32_t companion_of(const fj_doc *d, uint32_t obj, const char *key, size_t len)
{
    uint32_t k = obj + 1;
    for (uint32_t m = 0; m < d->nodes[obj].len; m++, k = fj_next(d, k + 1))
        if (key_is(d, k, "_", key, len))
            return k + 1;
    return FP_NO_NODE;
}

/* Push the item(s) of one property: value node v (may be FP_NO_NODE), companion comp. */
static void emit_property(fp_ctx *c, const fj_doc *d, uint32_t v, uint32_t comp, const fs_type *type,
                          const fs_element *el, fp_collection *out, size_t *cap)
{
    bool array = v != FP_NO_NODE ? d->nodes[v].type == FJ_ARRAY : d->nodes[comp].type == FJ_ARRAY;
    if (!array) {
        uint32_t ext = comp != FP_NO_NODE && d->nodes[comp].type == FJ_OBJECT ? comp : FP_NO_NODE;
        if (v != FP_NO_NODE && d->nodes[v].type == FJ_NULL)
            v = FP_NO_NODE;
        if (v == FP_NO_NODE && ext == FP_NO_NODE)
            return;
        fp_item it = fp_node_item(c->schema, d, v, ext, type, el);
        fpc_push(c, out, cap, &it);
        return;
    }
    /* Arrays: the companion array runs in parallel (null where an entry has no id/extension). */
    uint32_t count = v != FP_NO_NODE ? d->nodes[v].len : d->nodes[comp].len;
    bool comp_array = comp != FP_NO_NODE && d->nodes[comp].type == FJ_ARRAY;
    uint32_t ve = v != FP_NO_NODE ? v + 1 : FP_NO_NODE;
    uint32_t ce = comp_array ? comp + 1 : FP_NO_NODE;
    uint32_t comp_len = comp_array ? d->nodes[comp].len : 0;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t value = ve, ext = FP_NO_NODE;
        if (i < comp_len && d->nodes[ce].type == FJ_OBJECT)
            ext = ce;
        if (value != FP_NO_NODE && d->nodes[value].type == FJ_NULL)
            value = FP_NO_NODE;
        if (value != FP_NO_NODE || ext != FP_NO_NODE) {
            fp_item it = fp_node_item(c->schema, d, value, ext, type, el);
            fpc_push(c, out, cap, &it);
        }
        if (ve != FP_NO_NODE)
            ve = fj_next(d, ve);
        if (i + 1 < comp_len)
            ce = fj_next(d, ce);
    }
}

/* Could this JSON value carry a `_name` companion (a primitive, or an array of them)? */
static bool maybe_primitive(const fj_doc *d, uint32_t v)
{
    uint8_t t = d->nodes[v].type;
    if (t == FJ_ARRAY)
        return d->nodes[v].len == 0 || d->nodes[v + 1].type != FJ_OBJECT;
    return t != FJ_OBJECT;
}

/*
 * Does JSON key k (not starting with '_') name property `name`? Either
 * exactly, or as a choice: stem + type suffix ("valueQuantity" for "value").
 * Sets *el and *type from the schema when it knows the key.
 */
static bool key_matches(fp_ctx *c, const fj_doc *d, uint32_t k, const fs_element *kids, unsigned nkids,
                        const char *name, size_t len, const fs_element **el, const fs_type **type)
{
    const char *key = fj_str(d, k);
    size_t klen = d->nodes[k].len;
    if (name && (klen < len || memcmp(key, name, len)))
        return false;
    if (name && klen > len && (key[len] < 'A' || key[len] > 'Z'))
        return false;
    const fs_type *choice = NULL;
    *el = kids ? fs_lookup(c->schema, kids, nkids, key, klen, &choice) : NULL;
    *type = choice;
    if (*el && !choice && (*el)->type_count == 1)
        *type = fs_element_type(c->schema, *el, 0);
    if (!name || klen == len)
        return true;
    /* A longer key is this property only as a choice of exactly this stem. */
    if (!kids)
        return true;
    return *el && ((*el)->flags & FS_EL_CHOICE) && strlen((*el)->name) == len;
}

static void scan_object(fp_ctx *c, const fj_doc *d, uint32_t obj, const fs_element *kids, unsigned nkids,
                        const char *name, size_t len, fp_collection *out, size_t *cap)
{
    uint32_t k = obj + 1;
    for (uint32_t m = 0; m < d->nodes[obj].len; m++, k = fj_next(d, k + 1)) {
        const char *key = fj_str(d, k);
        uint32_t klen = d->nodes[k].len;
        const fs_element *el;
        const fs_type *type;
        if (klen > 0 && key[0] == '_') {
            /* A companion with no value beside it ("_given" without "given"). */
            uint32_t kk = obj + 1;
            bool has_value = false;
            for (uint32_t j = 0; j < d->nodes[obj].len && !has_value; j++, kk = fj_next(d, kk + 1))
                has_value = key_is(d, kk, NULL, key + 1, klen - 1);
            if (has_value)
                continue;
            /* match on the name without the underscore */
            if (name && (klen - 1 < len || memcmp(key + 1, name, len) ||
                         (klen - 1 > len && (key[1 + len] < 'A' || key[1 + len] > 'Z'))))
                continue;
            const fs_type *choice = NULL;
            el = kids ? fs_lookup(c->schema, kids, nkids, key + 1, klen - 1, &choice) : NULL;
            type = choice ? choice : el && el->type_count == 1 ? fs_element_type(c->schema, el, 0) : NULL;
            if (name && kids && klen - 1 > len && !(el && (el->flags & FS_EL_CHOICE)))
                continue;
            emit_property(c, d, FP_NO_NODE, k + 1, type, el, out, cap);
            continue;
        }
        if (!name && key_is(d, k, NULL, "resourceType", 12))
            continue;
        if (!key_matches(c, d, k, kids, nkids, name, len, &el, &type))
            continue;
        uint32_t comp = maybe_primitive(d, k + 1) ? companion_of(d, obj, key, klen) : FP_NO_NODE;
        emit_property(c, d, k + 1, comp, type, el, out, cap);
    }
}

void fp_members(fp_ctx *c, const fp_item *it, const char *name, size_t len, fp_collection *out, size_t *cap)
{
    if (it->kind == FP_TYPEINFO && name) {
        const char *v = len == 9 && !memcmp(name, "namespace", 9) ? it->u.typeinfo.ns
                        : len == 4 && !memcmp(name, "name", 4)    ? it->u.typeinfo.name
                                                                  : NULL;
        if (v) {
            fp_item s = fp_string(v, strlen(v));
            fpc_push(c, out, cap, &s);
        }
        return;
    }
    if (it->kind != FP_NODE)
        return;
    const fj_doc *d = it->u.node.doc;
    uint32_t obj = it->u.node.index;
    unsigned nkids = 0;
    const fs_element *kids;
    if (obj == FP_NO_NODE || d->nodes[obj].type != FJ_OBJECT) {
        obj = it->u.node.ext; /* a primitive: its id and extensions are in the companion */
        if (obj == FP_NO_NODE || d->nodes[obj].type != FJ_OBJECT)
            return;
    }
    kids = item_kids(c->schema, it, &nkids);
    scan_object(c, d, obj, kids, nkids, name, len, out, cap);
}

/* ---- helpers ------------------------------------------------------------- */

int fp_truth3(fp_ctx *c, const fp_ast *n, const fp_collection *coll)
{
    if (coll->count == 0)
        return -1;
    if (coll->count > 1) {
        fp_fail(c, n, "expected a single boolean, got a collection of %zu items", coll->count);
        return -2;
    }
    fp_item v;
    if (fp_to_system(c->schema, &coll->items[0], &v) && v.kind == FP_BOOLEAN)
        return v.u.boolean;
    return 1; /* singleton evaluation: any other single item counts as true */
}

static const char *kind_name(const fp_item *it)
{
    static const char *const names[] = {"element", "Boolean",  "Integer", "Decimal",  "String",
                                        "Date",    "DateTime", "Time",    "Quantity", "TypeInfo"};
    if (it->kind == FP_NODE && it->u.node.type)
        return it->u.node.type->name;
    return names[it->kind];
}

/* An operand that must be empty or one item; converted to its System value. */
static bool single_operand(fp_ctx *c, const fp_ast *n, const fp_collection *coll, fp_item *out, bool *empty,
                           const char *what)
{
    *empty = coll->count == 0;
    if (*empty)
        return true;
    if (coll->count > 1)
        return fp_fail(c, n, "%s expects a single item, got %zu", what, coll->count);
    if (!fp_to_system(c->schema, &coll->items[0], out)) {
        if (coll->items[0].kind == FP_NODE && coll->items[0].u.node.index == FP_NO_NODE) {
            *empty = true; /* a primitive with only an extension has no value */
            return true;
        }
        return fp_fail(c, n, "%s cannot use a %s", what, kind_name(&coll->items[0]));
    }
    return true;
}

static bool boolean_result(fp_ctx *c, const fp_ast *n, int v, fp_collection *out)
{
    if (v < 0) {
        fpc_empty(out);
        return true;
    }
    fp_item b = fp_boolean(v != 0);
    return fpc_single(c, n, &b, out);
}

/* ---- operators ----------------------------------------------------------- */

static bool eval_logic(fp_ctx *c, const fp_ast *n, const fp_scope *s, fp_collection *out)
{
    fp_collection lc, rc;
    if (!fp_eval(c, n->target, s, &lc))
        return false;
    int l = fp_truth3(c, n->target, &lc), r;
    if (l == -2)
        return false;
    /* Short cuts that no right-hand value can change. */
    if ((n->op == OP_AND && l == 0) || (n->op == OP_OR && l == 1))
        return boolean_result(c, n, l, out);
    if (n->op == OP_IMPLIES && l == 0)
        return boolean_result(c, n, 1, out);
    if (!fp_eval(c, n->right, s, &rc))
        return false;
    r = fp_truth3(c, n->right, &rc);
    if (r == -2)
        return false;
    int v;
    switch (n->op) {
    case OP_AND: v = r == 0 ? 0 : (l == 1 && r == 1) ? 1 : -1; break;
    case OP_OR: v = r == 1 ? 1 : (l == 0 && r == 0) ? 0 : -1; break;
    case OP_XOR: v = (l < 0 || r < 0) ? -1 : l != r; break;
    default: v = r == 1 ? 1 : l == 1 ? r : -1; break; /* implies, l is true or empty */
    }
    return boolean_result(c, n, v, out);
}

static int collections_equal(fp_ctx *c, const fp_collection *a, const fp_collection *b)
{
    if (a->count != b->count)
        return 0;
    int result = 1;
    for (size_t i = 0; i < a->count; i++) {
        int e = fp_equal_items(c->schema, &a->items[i], &b->items[i]);
        if (e == 0)
            return 0;
        if (e < 0)
            result = -1;
    }
    return result;
}

/* Equivalence of collections ignores order. */
static bool collections_equivalent(fp_ctx *c, const fp_collection *a, const fp_collection *b)
{
    if (a->count != b->count)
        return false;
    if (a->count == 1)
        return fp_equivalent_items(c->schema, &a->items[0], &b->items[0]);
    bool *used = fpa_alloc(c->arena, b->count);
    if (!used)
        return false;
    memset(used, 0, b->count);
    for (size_t i = 0; i < a->count; i++) {
        bool found = false;
        for (size_t j = 0; j < b->count && !found; j++)
            if (!used[j] && fp_equivalent_items(c->schema, &a->items[i], &b->items[j]))
                used[j] = found = true;
        if (!found)
            return false;
    }
    return true;
}

bool fp_contains_item(fp_ctx *c, const fp_collection *coll, const fp_item *it)
{
    for (size_t i = 0; i < coll->count; i++)
        if (fp_equal_items(c->schema, &coll->items[i], it) == 1)
            return true;
    return false;
}

/*
 * A hash consistent with equality: equal items hash alike. Strings and
 * objects hash by content (objects order-independently, as json_equal
 * compares them); numbers, dates and quantities, whose equality rounds or
 * converts, share one bucket per kind and are told apart by fp_equal_items.
 */
static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static uint64_t bytes_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static uint64_t json_hash(const fj_doc *d, uint32_t i)
{
    const fj_node *n = &d->nodes[i];
    switch (n->type) {
    case FJ_STRING: return bytes_hash(fj_str(d, i), n->len);
    case FJ_ARRAY: {
        uint64_t h = 7;
        for (uint32_t k = 0, e = i + 1; k < n->len; k++, e = fj_next(d, e))
            h = mix(h * 31 + json_hash(d, e));
        return h;
    }
    case FJ_OBJECT: {
        uint64_t h = 11;
        for (uint32_t k = 0, key = i + 1; k < n->len; k++, key = fj_next(d, key + 1))
            h += mix(bytes_hash(fj_str(d, key), d->nodes[key].len) ^ json_hash(d, key + 1));
        return h;
    }
    default: return n->type; /* numbers compare by value: one bucket */
    }
}

static uint64_t item_hash(fp_ctx *c, const fp_item *it)
{
    fp_item v;
    if (fp_to_system(c->schema, it, &v)) {
        if (v.kind == FP_STRING)
            return bytes_hash(v.u.string, v.len);
        if (v.kind == FP_BOOLEAN)
            return 100 + v.u.boolean;
        return 200 + (v.kind == FP_DATE ? FP_DATETIME : v.kind == FP_INTEGER ? FP_DECIMAL : v.kind);
    }
    if (it->kind == FP_NODE && it->u.node.index != FP_NO_NODE)
        return json_hash(it->u.node.doc, it->u.node.index);
    return 300 + it->kind;
}

typedef struct hash_slot {
    uint64_t hash;
    size_t index; /* into the output, +1 (0 = free) */
} hash_slot;

bool fp_union(fp_ctx *c, const fp_collection *a, const fp_collection *b, fp_collection *out)
{
    size_t cap = 0, total = a->count + b->count;
    fpc_empty(out);
    const fp_collection *parts[2] = {a, b};
    if (total <= 16) { /* small: pairwise is cheaper than hashing */
        for (int p = 0; p < 2; p++)
            for (size_t i = 0; i < parts[p]->count; i++)
                if (!fp_contains_item(c, out, &parts[p]->items[i]))
                    fpc_push(c, out, &cap, &parts[p]->items[i]);
        return true;
    }
    size_t size = 32;
    while (size < total * 2)
        size *= 2;
    hash_slot *slots = fpa_alloc(c->arena, size * sizeof *slots);
    if (!slots)
        return fp_fail(c, c->expr->root, "out of memory");
    memset(slots, 0, size * sizeof *slots);
    for (int p = 0; p < 2; p++)
        for (size_t i = 0; i < parts[p]->count; i++) {
            const fp_item *it = &parts[p]->items[i];
            uint64_t h = item_hash(c, it);
            size_t k = h & (size - 1);
            bool dup = false;
            for (; slots[k].index; k = (k + 1) & (size - 1))
                if (slots[k].hash == h && fp_equal_items(c->schema, &out->items[slots[k].index - 1], it) == 1) {
                    dup = true;
                    break;
                }
            if (dup)
                continue;
            fpc_push(c, out, &cap, it);
            slots[k].hash = h;
            slots[k].index = out->count;
        }
    return true;
}

static bool eval_membership(fp_ctx *c, const fp_ast *n, const fp_collection *l, const fp_collection *r,
                            fp_collection *out)
{
    const fp_collection *item = n->op == OP_IN ? l : r, *coll = n->op == OP_IN ? r : l;
    if (item->count == 0) {
        fpc_empty(out);
        return true;
    }
    if (item->count > 1)
        return fp_fail(c, n, "'%s' expects a single item on its %s, got %zu", n->op == OP_IN ? "in" : "contains",
                       n->op == OP_IN ? "left" : "right", item->count);
    return boolean_result(c, n, fp_contains_item(c, coll, &item->items[0]), out);
}

static bool eval_compare(fp_ctx *c, const fp_ast *n, const fp_collection *l, const fp_collection *r, fp_collection *out)
{
    if (l->count == 0 || r->count == 0) {
        fpc_empty(out);
        return true;
    }
    if (l->count > 1 || r->count > 1)
        return fp_fail(c, n, "comparison expects single items, got %zu and %zu", l->count, r->count);
    int sign;
    int tz = c->now_known ? c->now.tz_minutes : 0;
    fp_cmp res = fp_compare_items(c->schema, &l->items[0], &r->items[0], &sign, tz);
    if (res == FP_CMP_TYPE)
        return fp_fail(c, n, "cannot compare %s with %s", kind_name(&l->items[0]), kind_name(&r->items[0]));
    if (res == FP_CMP_EMPTY) {
        fpc_empty(out);
        return true;
    }
    bool v = n->op == OP_LT ? sign < 0 : n->op == OP_LE ? sign <= 0 : n->op == OP_GT ? sign > 0 : sign >= 0;
    return boolean_result(c, n, v, out);
}

static bool decimal_result(fp_ctx *c, const fp_ast *n, long double v, int scale, fp_collection *out)
{
    if (!isfinite(v)) {
        fpc_empty(out);
        return true;
    }
    fp_item it = {.kind = FP_DECIMAL, .scale = (int16_t)(scale > 18 ? 18 : scale)};
    it.u.decimal = v;
    return fpc_single(c, n, &it, out);
}

static bool integer_arith(fp_ctx *c, const fp_ast *n, int64_t x, int64_t y, fp_collection *out)
{
    int64_t r;
    bool overflow = false;
    switch (n->op) {
    case OP_ADD: overflow = __builtin_add_overflow(x, y, &r); break;
    case OP_SUB: overflow = __builtin_sub_overflow(x, y, &r); break;
    case OP_MUL: overflow = __builtin_mul_overflow(x, y, &r); break;
    case OP_IDIV:
    case OP_MOD:
        if (y == 0 || (x == INT64_MIN && y == -1)) {
            fpc_empty(out);
            return true;
        }
        r = n->op == OP_IDIV ? x / y : x % y;
        break;
    default: /* '/' always yields a Decimal */
        if (y == 0) {
            fpc_empty(out);
            return true;
        }
        return decimal_result(c, n, (long double)x / y, fp_natural_scale((long double)x / y, 0), out);
    }
    if (overflow) {
        fpc_empty(out);
        return true;
    }
    fp_item it = fp_integer(r);
    return fpc_single(c, n, &it, out);
}

static bool number_arith(fp_ctx *c, const fp_ast *n, const fp_item *a, const fp_item *b, fp_collection *out)
{
    if (a->kind == FP_INTEGER && b->kind == FP_INTEGER)
        return integer_arith(c, n, a->u.integer, b->u.integer, out);
    int sa = a->kind == FP_INTEGER ? 0 : a->scale, sb = b->kind == FP_INTEGER ? 0 : b->scale;
    long double x = a->kind == FP_INTEGER ? (long double)a->u.integer : a->u.decimal;
    long double y = b->kind == FP_INTEGER ? (long double)b->u.integer : b->u.decimal;
    int smax = sa > sb ? sa : sb;
    switch (n->op) {
    case OP_ADD: return decimal_result(c, n, x + y, smax, out);
    case OP_SUB: return decimal_result(c, n, x - y, smax, out);
    case OP_MUL: return decimal_result(c, n, x * y, sa + sb, out);
    case OP_DIV:
        if (y == 0) {
            fpc_empty(out);
            return true;
        }
        return decimal_result(c, n, x / y, fp_natural_scale(x / y, smax), out);
    case OP_IDIV: {
        if (y == 0) {
            fpc_empty(out);
            return true;
        }
        long double q = truncl(x / y);
        if (fabsl(q) < 9e18L) {
            fp_item it = fp_integer((int64_t)q);
            return fpc_single(c, n, &it, out);
        }
        return decimal_result(c, n, q, 0, out);
    }
    default: /* mod */
        if (y == 0) {
            fpc_empty(out);
            return true;
        }
        return decimal_result(c, n, fmodl(x, y), smax, out);
    }
}

static bool quantity_result(fp_ctx *c, const fp_ast *n, long double v, int scale, const char *unit, uint32_t len,
                            bool calendar, fp_collection *out)
{
    if (!isfinite(v)) {
        fpc_empty(out);
        return true;
    }
    fp_item it = {.kind = FP_QUANTITY, .scale = (int16_t)(scale > 18 ? 18 : scale), .len = len, .calendar = calendar};
    it.u.quantity.value = v;
    it.u.quantity.unit = unit;
    return fpc_single(c, n, &it, out);
}

static bool quantity_arith(fp_ctx *c, const fp_ast *n, const fp_item *a, const fp_item *b, fp_collection *out)
{
    bool qa = a->kind == FP_QUANTITY, qb = b->kind == FP_QUANTITY;
    const fp_item *q = qa ? a : b;
    if (n->op == OP_ADD || n->op == OP_SUB) {
        long double bv;
        if (!qa || !qb)
            return fp_fail(c, n, "cannot add or subtract a number and a quantity");
        if (!fp_quantity_convert(a, b, &bv)) {
            fpc_empty(out);
            return true;
        }
        long double v = n->op == OP_ADD ? a->u.quantity.value + bv : a->u.quantity.value - bv;
        return quantity_result(c, n, v, a->scale > b->scale ? a->scale : b->scale, a->u.quantity.unit, a->len,
                               a->calendar, out);
    }
    if (n->op != OP_MUL && n->op != OP_DIV)
        return fp_fail(c, n, "this operator does not apply to quantities");
    if (!qa || !qb) { /* scaling by a number keeps the unit */
        const fp_item *num = qa ? b : a;
        long double k = num->kind == FP_INTEGER ? (long double)num->u.integer : num->u.decimal;
        if (n->op == OP_DIV && (!qa || k == 0)) {
            if (!qa)
                return fp_fail(c, n, "cannot divide a number by a quantity");
            fpc_empty(out);
            return true;
        }
        long double v = n->op == OP_MUL ? q->u.quantity.value * k : q->u.quantity.value / k;
        return quantity_result(c, n, v, fp_natural_scale(v, q->scale), q->u.quantity.unit, q->len, q->calendar, out);
    }
    fp_unit ua, ub;
    if (!fp_unit_parse(a->u.quantity.unit, a->len, a->calendar, &ua) ||
        !fp_unit_parse(b->u.quantity.unit, b->len, b->calendar, &ub)) {
        fpc_empty(out);
        return true;
    }
    long double x = a->u.quantity.value * ua.factor, y = b->u.quantity.value * ub.factor;
    if (n->op == OP_DIV && y == 0) {
        fpc_empty(out);
        return true;
    }
    fp_unit r = {.factor = 1};
    for (int k = 0; k < FP_DIMS; k++)
        r.dim[k] = (int8_t)(n->op == OP_MUL ? ua.dim[k] + ub.dim[k] : ua.dim[k] - ub.dim[k]);
    uint32_t len;
    const char *unit = fp_unit_text(c->arena, &r, &len);
    if (!unit)
        return fp_fail(c, n, "out of memory");
    long double v = n->op == OP_MUL ? x * y : x / y;
    return quantity_result(c, n, v, fp_natural_scale(v, a->scale + b->scale), unit, len, false, out);
}

static bool temporal_arith(fp_ctx *c, const fp_ast *n, const fp_item *a, const fp_item *b, fp_collection *out)
{
    if (b->kind != FP_QUANTITY || (n->op != OP_ADD && n->op != OP_SUB))
        return fp_fail(c, n, "only a time quantity can be added to or subtracted from a %s", kind_name(a));
    fp_item r = *a;
    long double amount = n->op == OP_SUB ? -b->u.quantity.value : b->u.quantity.value;
    if (a->kind == FP_TIME) { /* on an arbitrary day: a time wraps around midnight */
        fp_datetime t = a->u.dt;
        t.year = 2000, t.month = 1, t.day = 1;
        if (!fp_add_duration(FP_DATETIME, &t, amount, b->u.quantity.unit, b->len, b->calendar))
            return fp_fail(c, n, "cannot add '%.*s' to a time", (int)b->len, b->u.quantity.unit);
        t.year = 0, t.month = 0, t.day = 0;
        r.u.dt = t;
        r.u.dt.precision = a->u.dt.precision;
    } else if (!fp_add_duration((fp_kind)a->kind, &r.u.dt, amount, b->u.quantity.unit, b->len, b->calendar)) {
        return fp_fail(c, n, "cannot add %.*s%.*s%.*s to a %s", !b->calendar, "'", (int)b->len, b->u.quantity.unit,
                       !b->calendar, "'", kind_name(a));
    }
    return fpc_single(c, n, &r, out);
}

static bool eval_concat(fp_ctx *c, const fp_ast *n, const fp_collection *l, const fp_collection *r, fp_collection *out)
{
    fp_item a = fp_string("", 0), b = fp_string("", 0);
    bool ea, eb;
    if (!single_operand(c, n, l, &a, &ea, "'&'") || !single_operand(c, n, r, &b, &eb, "'&'"))
        return false;
    if (ea)
        a = fp_string("", 0);
    if (eb)
        b = fp_string("", 0);
    if (a.kind != FP_STRING || b.kind != FP_STRING)
        return fp_fail(c, n, "'&' expects strings");
    char *s = fpa_alloc(c->arena, a.len + b.len + 1);
    if (!s)
        return fp_fail(c, n, "out of memory");
    memcpy(s, a.u.string, a.len);
    memcpy(s + a.len, b.u.string, b.len);
    fp_item it = fp_string(s, a.len + b.len);
    return fpc_single(c, n, &it, out);
}

static bool eval_arith(fp_ctx *c, const fp_ast *n, const fp_collection *l, const fp_collection *r, fp_collection *out)
{
    static const char *const sym[] = {"*", "/", "div", "mod", "+", "-"};
    fp_item a, b;
    bool ea, eb;
    if (!single_operand(c, n, l, &a, &ea, sym[n->op]) || !single_operand(c, n, r, &b, &eb, sym[n->op]))
        return false;
    if (ea || eb) {
        fpc_empty(out);
        return true;
    }
    bool na = a.kind == FP_INTEGER || a.kind == FP_DECIMAL, nb = b.kind == FP_INTEGER || b.kind == FP_DECIMAL;
    if (na && nb)
        return number_arith(c, n, &a, &b, out);
    if ((a.kind == FP_QUANTITY && (nb || b.kind == FP_QUANTITY)) || (na && b.kind == FP_QUANTITY))
        return quantity_arith(c, n, &a, &b, out);
    if (a.kind == FP_DATE || a.kind == FP_DATETIME || a.kind == FP_TIME)
        return temporal_arith(c, n, &a, &b, out);
    if (n->op == OP_ADD && a.kind == FP_STRING && b.kind == FP_STRING) {
        r = NULL;
        fp_collection x = {&a, 1}, y = {&b, 1};
        return eval_concat(c, n, &x, &y, out);
    }
    return fp_fail(c, n, "operator '%s' cannot combine %s and %s", sym[n->op], kind_name(&a), kind_name(&b));
}

static bool eval_binary(fp_ctx *c, const fp_ast *n, const fp_scope *s, fp_collection *out)
{
    if (n->op == OP_AND || n->op == OP_OR || n->op == OP_XOR || n->op == OP_IMPLIES)
        return eval_logic(c, n, s, out);
    fp_collection l, r;
    if (!fp_eval(c, n->target, s, &l) || !fp_eval(c, n->right, s, &r))
        return false;
    switch (n->op) {
    case OP_EQ:
    case OP_NE: {
        if (l.count == 0 || r.count == 0) {
            fpc_empty(out);
            return true;
        }
        int e = collections_equal(c, &l, &r);
        return boolean_result(c, n, e < 0 ? -1 : n->op == OP_EQ ? e : !e, out);
    }
    case OP_EQUIV:
    case OP_NEQUIV: {
        bool e = collections_equivalent(c, &l, &r);
        return boolean_result(c, n, n->op == OP_EQUIV ? e : !e, out);
    }
    case OP_LT:
    case OP_LE:
    case OP_GT:
    case OP_GE: return eval_compare(c, n, &l, &r, out);
    case OP_UNION: return fp_union(c, &l, &r, out);
    case OP_IN:
    case OP_CONTAINS: return eval_membership(c, n, &l, &r, out);
    case OP_CONCAT: return eval_concat(c, n, &l, &r, out);
    default: return eval_arith(c, n, &l, &r, out);
    }
}

/* ---- variables ----------------------------------------------------------- */

static bool string_result(fp_ctx *c, const fp_ast *n, const char *s, size_t len, fp_collection *out)
{
    fp_item it = fp_string(s, len);
    return fpc_single(c, n, &it, out);
}

static bool node_result(fp_ctx *c, const fp_ast *n, uint32_t index, fp_collection *out)
{
    if (index == FP_NO_NODE || !c->env->doc) {
        fpc_empty(out);
        return true;
    }
    fp_item it = fp_node_item(c->schema, c->env->doc, index, FP_NO_NODE, NULL, NULL);
    return fpc_single(c, n, &it, out);
}

static bool prefixed_url(fp_ctx *c, const fp_ast *n, const char *base, const char *rest, fp_collection *out)
{
    size_t bl = strlen(base), rl = strlen(rest);
    char *s = fpa_alloc(c->arena, bl + rl + 1);
    if (!s)
        return fp_fail(c, n, "out of memory");
    memcpy(s, base, bl);
    memcpy(s + bl, rest, rl + 1);
    return string_result(c, n, s, bl + rl, out);
}

static bool eval_variable(fp_ctx *c, const fp_ast *n, fp_collection *out)
{
    const char *name = n->name;
    for (size_t i = 0; i < c->env->var_count; i++)
        if (!strcmp(c->env->vars[i].name, name)) {
            *out = c->env->vars[i].value;
            return true;
        }
    static const struct {
        const char *name, *value;
    } constants[] = {{"ucum", "http://unitsofmeasure.org"},
                     {"sct", "http://snomed.info/sct"},
                     {"loinc", "http://loinc.org"}};
    for (size_t i = 0; i < sizeof constants / sizeof *constants; i++)
        if (!strcmp(name, constants[i].name))
            return string_result(c, n, constants[i].value, strlen(constants[i].value), out);
    if (!strcmp(name, "context")) {
        *out = c->context;
        return true;
    }
    if (!strcmp(name, "resource"))
        return node_result(c, n, c->env->resource, out);
    if (!strcmp(name, "rootResource"))
        return node_result(c, n, c->env->root_resource != FP_NO_NODE ? c->env->root_resource : c->env->resource, out);
    if (!strncmp(name, "vs-", 3))
        return prefixed_url(c, n, "http://hl7.org/fhir/ValueSet/", name + 3, out);
    if (!strncmp(name, "ext-", 4))
        return prefixed_url(c, n, "http://hl7.org/fhir/StructureDefinition/", name + 4, out);
    return fp_fail(c, n, "unknown variable %%%s", name);
}

/* ---- the walk ------------------------------------------------------------ */

static bool eval_member(fp_ctx *c, const fp_ast *n, const fp_scope *s, fp_collection *out)
{
    fp_collection in;
    if (n->target) {
        if (!fp_eval(c, n->target, s, &in))
            return false;
    } else {
        in = *s->focus;
    }
    size_t cap = 0;
    fpc_empty(out);
    for (size_t i = 0; i < in.count; i++) {
        const fp_item *it = &in.items[i];
        /* "Patient.name": a type name selects the focus when it is of that type. */
        if (n->name_type && it->kind == FP_NODE && fp_type_is_a(c->schema, it->u.node.type, n->name_type)) {
            fpc_push(c, out, &cap, it);
            continue;
        }
        fp_members(c, it, n->name, n->name_len, out, &cap);
    }
    return true;
}

static bool eval_indexer(fp_ctx *c, const fp_ast *n, const fp_scope *s, fp_collection *out)
{
    fp_collection in, idx;
    if (!fp_eval(c, n->target, s, &in) || !fp_eval(c, n->right, s, &idx))
        return false;
    fp_item i;
    bool empty;
    if (!single_operand(c, n, &idx, &i, &empty, "an index"))
        return false;
    if (empty) {
        fpc_empty(out);
        return true;
    }
    if (i.kind != FP_INTEGER)
        return fp_fail(c, n->right, "an index must be an Integer, not %s", kind_name(&i));
    if (i.u.integer < 0 || (uint64_t)i.u.integer >= in.count) {
        fpc_empty(out);
        return true;
    }
    out->items = &in.items[i.u.integer];
    out->count = 1;
    return true;
}

static bool eval_negate(fp_ctx *c, const fp_ast *n, const fp_scope *s, fp_collection *out)
{
    fp_collection in;
    if (!fp_eval(c, n->target, s, &in))
        return false;
    fp_item v;
    bool empty;
    if (!single_operand(c, n, &in, &v, &empty, "unary '-'"))
        return false;
    if (empty) {
        fpc_empty(out);
        return true;
    }
    switch (v.kind) {
    case FP_INTEGER: v.u.integer = -v.u.integer; break;
    case FP_DECIMAL: v.u.decimal = -v.u.decimal; break;
    case FP_QUANTITY: v.u.quantity.value = -v.u.quantity.value; break;
    default: return fp_fail(c, n, "unary '-' cannot negate a %s", kind_name(&v));
    }
    return fpc_single(c, n, &v, out);
}

static bool eval_type_op(fp_ctx *c, const fp_ast *n, const fp_scope *s, fp_collection *out)
{
    fp_collection in;
    if (!fp_eval(c, n->target, s, &in))
        return false;
    if (in.count == 0) {
        fpc_empty(out);
        return true;
    }
    if (in.count > 1 && n->kind == A_AS && c->env->lenient) {
        size_t cap = 0;
        fpc_empty(out);
        for (size_t i = 0; i < in.count; i++)
            if (fp_item_is(c->schema, c->env->lenient, &in.items[i], &n->type))
                fpc_push(c, out, &cap, &in.items[i]);
        return true;
    }
    if (in.count > 1)
        return fp_fail(c, n, "'%s' expects a single item, got %zu", n->kind == A_IS ? "is" : "as", in.count);
    bool is = fp_item_is(c->schema, c->env->lenient, &in.items[0], &n->type);
    if (n->kind == A_IS)
        return boolean_result(c, n, is, out);
    if (is)
        *out = in;
    else
        fpc_empty(out);
    return true;
}

bool fp_eval(fp_ctx *c, const fp_ast *n, const fp_scope *s, fp_collection *out)
{
    switch (n->kind) {
    case A_LITERAL:
        out->items = (fp_item *)&n->literal; /* collections are read-only: share the AST's item */
        out->count = 1;
        return true;
    case A_EMPTY: fpc_empty(out); return true;
    case A_THIS: *out = *s->this_; return true;
    case A_INDEX: {
        if (s->index < 0) {
            fpc_empty(out);
            return true;
        }
        fp_item it = fp_integer(s->index);
        return fpc_single(c, n, &it, out);
    }
    case A_TOTAL:
        if (s->total)
            *out = *s->total;
        else
            fpc_empty(out);
        return true;
    case A_VAR: return eval_variable(c, n, out);
    case A_MEMBER: return eval_member(c, n, s, out);
    case A_CALL: {
        fp_collection in;
        if (n->target) {
            if (!fp_eval(c, n->target, s, &in))
                return false;
        } else {
            in = *s->focus;
        }
        if (++c->depth > c->max_depth)
            return fp_fail(c, n, "evaluation nested too deeply (more than %u calls)", c->max_depth);
        bool ok = fp_call(c, n, &in, s, out);
        c->depth--;
        return ok;
    }
    case A_INDEXER: return eval_indexer(c, n, s, out);
    case A_NEGATE: return eval_negate(c, n, s, out);
    case A_BINARY: return eval_binary(c, n, s, out);
    case A_IS:
    case A_AS: return eval_type_op(c, n, s, out);
    default: return fp_fail(c, n, "internal error: unknown node");
    }
}

/* ---- entry points -------------------------------------------------------- */

void fp_env_init(fp_env *env, const fj_doc *doc)
{
    memset(env, 0, sizeof *env);
    env->schema = fs_r4();
    env->doc = doc;
    env->resource = doc && doc->count ? 0 : FP_NO_NODE;
    env->root_resource = FP_NO_NODE;
}

bool fp_evaluate(const fp_expr *e, const fp_env *env, const fp_collection *input, fp_arena *arena, fp_collection *out,
                 fp_error *err)
{
    fp_error scratch;
    if (!err)
        err = &scratch;
    err->position = -1;
    err->message[0] = '\0';
    fp_ctx c = {.env = env, .schema = env->schema ? env->schema : fs_r4(), .expr = e, .arena = arena, .err = err};
    c.context = *input;
    c.max_depth = env->max_depth ? env->max_depth : FP_DEFAULT_MAX_DEPTH;
    if (env->now) {
        c.now = *env->now;
        c.now_known = true;
    }
    fp_scope s = {.focus = &c.context, .this_ = &c.context, .index = -1, .total = NULL};
    bool ok = fp_eval(&c, e->root, &s, out);
    if (ok && fpa_failed(arena)) {
        ok = false;
        err->position = 0;
        snprintf(err->message, sizeof err->message, "out of memory");
    }
    if (!ok) {
        fpc_empty(out);
        if (!err->message[0])
            snprintf(err->message, sizeof err->message, "evaluation failed");
    }
    return ok;
}

bool fp_evaluate_node(const fp_expr *e, const fp_env *env, uint32_t node, const fs_type *type,
                      const fs_element *element, fp_arena *arena, fp_collection *out, fp_error *err)
{
    fp_collection in = {NULL, 0};
    if (node != FP_NO_NODE && env->doc) {
        in.items = fpa_alloc(arena, sizeof *in.items); /* in the arena: results may point at it */
        if (!in.items) {
            if (err) {
                err->position = -1;
                snprintf(err->message, sizeof err->message, "out of memory");
            }
            return false;
        }
        in.items[0] = fp_node_item(env->schema ? env->schema : fs_r4(), env->doc, node, FP_NO_NODE, type, element);
        in.count = 1;
    }
    return fp_evaluate(e, env, &in, arena, out, err);
}

fp_truth fp_truth_of(const fp_collection *c)
{
    if (c->count == 0)
        return FP_EMPTY;
    if (c->count > 1)
        return FP_NOT_BOOLEAN;
    fp_item v;
    if (!fp_to_system(fs_r4(), &c->items[0], &v) || v.kind != FP_BOOLEAN)
        return FP_NOT_BOOLEAN;
    return v.u.boolean ? FP_TRUE : FP_FALSE;
}
