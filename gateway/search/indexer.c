/*
 * gateway/search/indexer.c — search index rows (see indexer.h).
 *
 * ix_new compiles one expression per (resource type, parameter) once;
 * ix_extract evaluates the ones of a type and turns each result item into
 * rows by the item's FHIR type (the value_rows dispatch below).
 */
#include "gateway/search/indexer.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/array.h"
#include "fhir/reference.h"
#include "gateway/search/search.h"
#include "gateway/util/personal.h"

#define IX_MAX_GUARDS 8

typedef struct ix_param {
    const fs_search_param *def;
    fp_expr *expr;
    /* The top-level members the expression starts from ("CarePlan.subject | CarePlan.encounter" ->
     * subject, encounter). When the resource has none of them the parameter has no value and is
     * not evaluated. guard_count 0: the expression has another shape, always evaluate. */
    char guards[IX_MAX_GUARDS][48];
    unsigned guard_count;
    bool personal; /* its rows hold personal data (the table in gateway/util/personal.h) */
} ix_param;

struct ix_indexer {
    const fs_schema *schema;
    ix_param *params; /* in schema order: grouped by resource type */
    size_t count;
};

static bool default_supported(fs_search_kind k)
{
    return k != FS_SEARCH_COMPOSITE && k != FS_SEARCH_SPECIAL;
}

/* Appends n bytes of s to the growing text out (NUL-terminated); false when out of memory. */
static bool append(char **out, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (!fa_reserve(out, cap, *len + n + 1, 1))
        return false;
    memcpy(*out + *len, s, n);
    *len += n;
    (*out)[*len] = '\0';
    return true;
}

char *ix_rewrite_resolve(const char *expression)
{
    static const char needle[] = "resolve() is ";
    char *out = NULL;
    size_t len = 0, cap = 0;
    bool ok = append(&out, &len, &cap, "", 0);
    const char *p = expression;
    for (const char *hit; ok && (hit = strstr(p, needle)) != NULL;) {
        const char *type = hit + sizeof needle - 1;
        size_t tlen = strspn(type, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");
        ok = append(&out, &len, &cap, p, (size_t)(hit - p)) &&
             append(&out, &len, &cap, "(reference.startsWith('", strlen("(reference.startsWith('")) &&
             append(&out, &len, &cap, type, tlen) &&
             append(&out, &len, &cap, "/') or reference.contains('/", strlen("/') or reference.contains('/")) &&
             append(&out, &len, &cap, type, tlen) && append(&out, &len, &cap, "/'))", strlen("/'))"));
        p = type + tlen;
    }
    if (ok)
        ok = append(&out, &len, &cap, p, strlen(p));
    if (!ok) {
        free(out);
        return NULL;
    }
    return out;
}

/* Fill p's guards from its expression; none when a union part does not start with "<Type>.<member>". */
static void find_guards(ix_param *p, const char *expression)
{
    const char *type = p->def->resource;
    size_t tlen = strlen(type);
    p->guard_count = 0;
    const char *part = expression;
    for (;;) {
        while (*part == ' ' || *part == '(')
            part++;
        static const char name_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        bool starts_with_type = !strncmp(part, type, tlen) && part[tlen] == '.';
        size_t mlen = starts_with_type ? strspn(part + tlen + 1, name_chars) : 0;
        if (!mlen || mlen >= sizeof p->guards[0] || p->guard_count == IX_MAX_GUARDS) {
            p->guard_count = 0;
            return;
        }
        memcpy(p->guards[p->guard_count], part + tlen + 1, mlen);
        p->guards[p->guard_count++][mlen] = '\0';
        /* the next top-level union part */
        int depth = 0;
        const char *q = part;
        for (; *q && !(*q == '|' && depth == 0); q++)
            depth += *q == '(' ? 1 : *q == ')' ? -1 : 0;
        if (!*q)
            return;
        part = q + 1;
    }
}

/* Does the resource have any member the parameter starts from (or is it unguarded)? */
static bool may_have_value(const ix_param *p, const fj_doc *doc, uint32_t node)
{
    if (!p->guard_count)
        return true;
    for (unsigned i = 0; i < p->guard_count; i++) {
        if (fj_get(doc, node, p->guards[i]) != UINT32_MAX)
            return true;
        /* a choice element is written with its type: "value[x]" -> valueQuantity, or a primitive's _member */
        char companion[50];
        snprintf(companion, sizeof companion, "_%s", p->guards[i]);
        if (fj_get(doc, node, companion) != UINT32_MAX)
            return true;
        size_t len = strlen(p->guards[i]);
        uint32_t key = node + 1;
        for (uint32_t m = 0; m < doc->nodes[node].len; m++, key = fj_next(doc, key + 1))
            if (doc->nodes[key].len > len && !memcmp(fj_str(doc, key), p->guards[i], len) &&
                fj_str(doc, key)[len] >= 'A' && fj_str(doc, key)[len] <= 'Z')
                return true;
    }
    return false;
}

ix_indexer *ix_new(const fs_schema *s, bool (*supported)(fs_search_kind), char *err, size_t errlen)
{
    if (!supported)
        supported = default_supported;
    ix_indexer *ix = calloc(1, sizeof *ix);
    if (!ix)
        return NULL;
    ix->schema = s;
    ix->params = calloc(s->search_param_count, sizeof *ix->params);
    for (uint32_t i = 0; i < s->search_param_count; i++) {
        const fs_search_param *p = &s->search_params[i];
        if (!supported(p->kind))
            continue;
        char *source = ix_rewrite_resolve(p->expression);
        fp_error e;
        fp_expr *expr = source ? fp_compile(source, s, &e) : NULL;
        free(source);
        if (!expr) {
            /* a parameter whose expression the engine cannot compile is left out, not fatal */
            if (err && !*err)
                snprintf(err, errlen, "%s.%s not indexed: %s", p->resource, p->code, e.message);
            continue;
        }
        ix_param *ip = &ix->params[ix->count++];
        ip->def = p;
        ip->expr = expr;
        ip->personal = pd_is_personal(p->resource, p->code);
        find_guards(ip, p->expression);
    }
    return ix;
}

void ix_free(ix_indexer *ix)
{
    if (!ix)
        return;
    for (size_t i = 0; i < ix->count; i++)
        fp_expr_free(ix->params[i].expr);
    free(ix->params);
    free(ix);
}

void ix_rows_free(ix_rows *r)
{
    for (size_t i = 0; i < r->count; i++) {
        ix_row *row = &r->rows[i];
        free(row->text);
        free(row->system);
        free(row->code);
        free(row->ref_type);
        free(row->ref_id);
    }
    free(r->rows);
    memset(r, 0, sizeof *r);
}

/* ---- rows ---- */

typedef struct ectx {
    const fs_schema *s;
    const fj_doc *doc;
    const fs_search_param *def;
    bool personal; /* the parameter's rows are marked personal */
    ix_rows *out;
} ectx;

static ix_row *new_row(ectx *c, ix_kind kind)
{
    ix_rows *r = c->out;
    if (!fa_reserve(&r->rows, &r->capacity, r->count + 1, sizeof *r->rows))
        return NULL;
    ix_row *row = &r->rows[r->count++];
    memset(row, 0, sizeof *row);
    row->param = c->def->code;
    row->kind = kind;
    row->personal = c->personal;
    return row;
}

/* A string member of an object node, NULL when absent. */
static const char *member(const fj_doc *d, uint32_t obj, const char *key, size_t *len)
{
    uint32_t v = d->nodes[obj].type == FJ_OBJECT ? fj_get(d, obj, key) : UINT32_MAX;
    if (v == UINT32_MAX || (d->nodes[v].type != FJ_STRING && d->nodes[v].type != FJ_NUMBER))
        return NULL;
    *len = d->nodes[v].len;
    return fj_str(d, v);
}

static char *dup_member(const fj_doc *d, uint32_t obj, const char *key)
{
    size_t len;
    const char *s = member(d, obj, key, &len);
    return s ? strndup(s, len) : NULL;
}

static void string_row(ectx *c, const char *s, size_t len)
{
    ix_row *row = new_row(c, IX_STRING);
    if (!row)
        return;
    row->text = strndup(s, len);
}

/* Every string (or array of strings) member of obj named in `keys`, as string rows. */
static void string_members(ectx *c, uint32_t obj, const char *const *keys)
{
    const fj_doc *d = c->doc;
    for (; *keys; keys++) {
        uint32_t v = fj_get(d, obj, *keys);
        if (v == UINT32_MAX)
            continue;
        if (d->nodes[v].type == FJ_STRING) {
            string_row(c, fj_str(d, v), d->nodes[v].len);
        } else if (d->nodes[v].type == FJ_ARRAY) {
            uint32_t item = v + 1;
            for (uint32_t i = 0; i < d->nodes[v].len; i++, item = fj_next(d, item))
                if (d->nodes[item].type == FJ_STRING)
                    string_row(c, fj_str(d, item), d->nodes[item].len);
        }
    }
}

static void token_row(ectx *c, char *system, char *code)
{
    ix_row *row = new_row(c, IX_TOKEN);
    if (!row) {
        free(system);
        free(code);
        return;
    }
    row->system = system;
    row->code = code;
}

static void coding_rows(ectx *c, uint32_t obj, const char *code_key)
{
    char *code = dup_member(c->doc, obj, code_key);
    if (code)
        token_row(c, dup_member(c->doc, obj, "system"), code);
}

static void date_row(ectx *c, int64_t lo, int64_t hi)
{
    ix_row *row = new_row(c, IX_DATE);
    if (row) {
        row->lo_ms = lo;
        row->hi_ms = hi;
    }
}

static void date_text_row(ectx *c, const char *s, size_t len)
{
    int64_t lo, hi;
    if (sq_date_range(s, len, &lo, &hi))
        date_row(c, lo, hi);
}

static void period_row(ectx *c, uint32_t obj)
{
    size_t sl, el;
    const char *start = member(c->doc, obj, "start", &sl), *end = member(c->doc, obj, "end", &el);
    int64_t lo = INT64_MIN, hi = INT64_MAX, ignore;
    if (start && !sq_date_range(start, sl, &lo, &ignore))
        return;
    if (end && !sq_date_range(end, el, &ignore, &hi))
        return;
    if (start || end)
        date_row(c, lo, hi);
}

static void reference_row(ectx *c, const char *ref, size_t len)
{
    ix_row *row = new_row(c, IX_REFERENCE);
    if (!row)
        return;
    row->text = strndup(ref, len);
    fr_parts parts;
    if (fr_parse(ref, len, &parts)) { /* urn:uuid:, #contained: no type/id parts */
        row->ref_type = strndup(parts.type, parts.type_len);
        row->ref_id = strndup(parts.id, parts.id_len);
    }
}

static void number_row(ectx *c, ix_kind kind, const char *text, size_t len, uint32_t obj)
{
    /* the whole number, however many digits: a cut one would be indexed as another value */
    char *digits = strndup(text, len);
    ix_row *row = digits ? new_row(c, kind) : NULL;
    if (!row) {
        free(digits);
        return;
    }
    row->number = strtod(digits, NULL);
    free(digits);
    if (kind == IX_QUANTITY && obj != UINT32_MAX) {
        row->system = dup_member(c->doc, obj, "system");
        row->code = dup_member(c->doc, obj, "code");
        if (!row->code)
            row->code = dup_member(c->doc, obj, "unit");
    }
}

static bool type_is(const fs_type *t, const char *name)
{
    return t && !strcmp(t->name, name);
}

static const char *const human_name_parts[] = {"family", "given", "prefix", "suffix", "text", NULL};
static const char *const address_parts[] = {"line", "city", "district", "state", "postalCode", "country", "text", NULL};

/* Rows for one node value, by its FHIR type and the parameter's kind. */
static void node_rows(ectx *c, const fp_item *it)
{
    const fj_doc *d = it->u.node.doc;
    uint32_t n = it->u.node.index;
    const fs_type *t = it->u.node.type;
    if (n == FP_NO_NODE)
        return;
    const fj_node *node = &d->nodes[n];
    fs_search_kind kind = c->def->kind;
    if (node->type == FJ_STRING || node->type == FJ_NUMBER || node->type == FJ_TRUE || node->type == FJ_FALSE) {
        const char *s = node->type == FJ_TRUE ? "true" : node->type == FJ_FALSE ? "false" : fj_str(d, n);
        size_t len = node->type == FJ_TRUE ? 4 : node->type == FJ_FALSE ? 5 : node->len;
        switch (kind) {
        case FS_SEARCH_STRING: string_row(c, s, len); break;
        case FS_SEARCH_TOKEN: token_row(c, NULL, strndup(s, len)); break;
        case FS_SEARCH_DATE: date_text_row(c, s, len); break;
        case FS_SEARCH_REFERENCE: reference_row(c, s, len); break;
        case FS_SEARCH_NUMBER: number_row(c, IX_NUMBER, s, len, UINT32_MAX); break;
        case FS_SEARCH_URI: {
            ix_row *row = new_row(c, IX_URI);
            if (row)
                row->text = strndup(s, len);
            break;
        }
        default: break;
        }
        return;
    }
    if (node->type != FJ_OBJECT)
        return;
    if (type_is(t, "HumanName"))
        string_members(c, n, human_name_parts);
    else if (type_is(t, "Address"))
        string_members(c, n, address_parts);
    else if (type_is(t, "Coding"))
        coding_rows(c, n, "code");
    else if (type_is(t, "Identifier") || type_is(t, "ContactPoint"))
        coding_rows(c, n, "value");
    else if (type_is(t, "CodeableConcept")) {
        uint32_t codings = fj_get(d, n, "coding");
        if (codings != UINT32_MAX && d->nodes[codings].type == FJ_ARRAY) {
            uint32_t item = codings + 1;
            for (uint32_t i = 0; i < d->nodes[codings].len; i++, item = fj_next(d, item))
                coding_rows(c, item, "code");
        }
    } else if (type_is(t, "Reference")) {
        size_t len;
        const char *ref = member(d, n, "reference", &len);
        if (ref)
            reference_row(c, ref, len);
    } else if (type_is(t, "Period")) {
        period_row(c, n);
    } else if (type_is(t, "Timing")) {
        uint32_t events = fj_get(d, n, "event");
        if (events != UINT32_MAX && d->nodes[events].type == FJ_ARRAY) {
            uint32_t item = events + 1;
            for (uint32_t i = 0; i < d->nodes[events].len; i++, item = fj_next(d, item))
                if (d->nodes[item].type == FJ_STRING)
                    date_text_row(c, fj_str(d, item), d->nodes[item].len);
        }
    } else if (kind == FS_SEARCH_QUANTITY || kind == FS_SEARCH_NUMBER) {
        size_t len;
        const char *value = member(d, n, "value", &len);
        if (value)
            number_row(c, kind == FS_SEARCH_QUANTITY ? IX_QUANTITY : IX_NUMBER, value, len, n);
    }
}

/* Rows for a System value a function produced (strings, booleans, numbers, dates), whole however long. */
static void system_rows(ectx *c, const fp_item *it)
{
    char first[128], *buf = first;
    size_t len = fp_item_text(it, first, sizeof first);
    if (len >= sizeof first) { /* too long for the first try: again with room for all of it */
        if (!(buf = malloc(len + 1)))
            return;
        len = fp_item_text(it, buf, len + 1);
    }
    switch (c->def->kind) {
    case FS_SEARCH_STRING: string_row(c, buf, len); break;
    case FS_SEARCH_TOKEN: token_row(c, NULL, strndup(buf, len)); break;
    case FS_SEARCH_DATE: date_text_row(c, buf, len); break;
    case FS_SEARCH_REFERENCE: reference_row(c, buf, len); break;
    default: break;
    }
    if (buf != first)
        free(buf);
}

/* [first, end) of the parameters of one resource type (binary search: they are sorted by type). */
static void param_range(const ix_indexer *ix, const char *type, size_t out[2])
{
    size_t lo = 0, hi = ix->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(ix->params[mid].def->resource, type) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t end = lo;
    while (end < ix->count && !strcmp(ix->params[end].def->resource, type))
        end++;
    out[0] = lo;
    out[1] = end;
}

/* Rows of one parameter; false with err filled when its expression fails. */
static bool extract_param(const ix_indexer *ix, const ix_param *p, const fp_env *env, fp_arena *arena, uint32_t node,
                          const fs_type *t, ix_rows *out, char *err, size_t errlen)
{
    fp_collection result;
    fp_error e;
    if (!fp_evaluate_node(p->expr, env, node, t, NULL, arena, &result, &e)) {
        snprintf(err, errlen, "search parameter %s: %s", p->def->code, e.message);
        return false;
    }
    ectx c = {ix->schema, env->doc, p->def, p->personal, out};
    for (size_t k = 0; k < result.count; k++) {
        if (result.items[k].kind == FP_NODE)
            node_rows(&c, &result.items[k]);
        else
            system_rows(&c, &result.items[k]);
    }
    fp_arena_reset(arena);
    return true;
}

bool ix_extract(const ix_indexer *ix, fp_arena *arena, const fj_doc *doc, uint32_t node, const char *type, ix_rows *out,
                char *err, size_t errlen)
{
    fp_env env;
    fp_env_init(&env, doc);
    env.schema = ix->schema;
    env.resource = node;
    const fs_type *t = fs_type_by_name(ix->schema, type, strlen(type));
    /* the parameters are in schema order, grouped by resource type: the type's own, then Resource's */
    const char *groups[2] = {type, "Resource"};
    for (int g = 0; g < 2; g++) {
        size_t range[2];
        param_range(ix, groups[g], range);
        for (size_t i = range[0]; i < range[1]; i++)
            if (may_have_value(&ix->params[i], doc, node) &&
                !extract_param(ix, &ix->params[i], &env, arena, node, t, out, err, errlen))
                return false;
    }
    return true;
}
