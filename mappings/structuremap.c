/*
 * mappings/structuremap.c — StructureMap JSON to the executable form, with
 * the checks that need no source data (see structuremap.h).
 *
 * Loading walks the groups twice: the first pass copies groups and rules,
 * checking variables in scope and compiling FHIRPath; the second resolves
 * `extends` and `then group(...)` now that every group is known.
 *
 * Memory: everything in an sm_map is owned by it (strings duplicated,
 * expressions compiled here); sm_free releases it all. The scope of names
 * used while loading borrows the strings of the map being built.
 */
#include "mappings/structuremap.h"

#include "fhir/array.h"
#include "fhir/json_write.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct loader {
    const sm_options *opts;
    oo_list *issues;
    const char **scope; /* variable names visible where we are */
    size_t scope_count, scope_cap;
    bool failed;
} loader;

static bool problem(loader *l, const char *where, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool problem(loader *l, const char *where, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    oo_add(l->issues, OO_ERROR, OO_STRUCTURE, NULL, 0, 0, "%s%s%s", where ? where : "", where ? ": " : "", msg);
    l->failed = true;
    return false;
}

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

static char *dup(const char *s)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        abort(); /* out of memory while loading a map: nothing sensible to continue with */
    return d;
}

static void *alloc_array(size_t n, size_t size)
{
    if (!n)
        return NULL;
    void *p = calloc(n, size);
    if (!p)
        abort();
    return p;
}

/* ---- scope --------------------------------------------------------------- */

static void scope_push(loader *l, const char *name)
{
    if (!name)
        return;
    if (!fa_reserve(&l->scope, &l->scope_cap, l->scope_count + 1, sizeof *l->scope))
        abort();
    l->scope[l->scope_count++] = name;
}

static bool in_scope(const loader *l, const char *name, size_t len)
{
    for (size_t i = 0; i < l->scope_count; i++)
        if (strlen(l->scope[i]) == len && !memcmp(l->scope[i], name, len))
            return true;
    return false;
}

/* ---- FHIRPath ------------------------------------------------------------ */

/*
 * The expression with every bare identifier that names a variable in scope
 * written as %name: not after '.', '%' or '$', not a function name (followed
 * by '('), not inside quotes. Malloc'd.
 */
static char *rewrite_vars(const loader *l, const char *src)
{
    fj_buf b = {0};
    size_t n = strlen(src);
    char prev = 0; /* the last non-space character copied */
    for (size_t i = 0; i < n;) {
        char c = src[i];
        if (c == '\'' || c == '"' || c == '`') {
            size_t j = i + 1;
            while (j < n && src[j] != c)
                j += src[j] == '\\' ? 2 : 1;
            j = j < n ? j + 1 : n;
            fj_buf_append(&b, src + i, j - i);
            i = j;
            prev = c;
        } else if (isalpha((unsigned char)c) || c == '_') {
            size_t j = i;
            while (j < n && (isalnum((unsigned char)src[j]) || src[j] == '_'))
                j++;
            size_t k = j;
            while (k < n && isspace((unsigned char)src[k]))
                k++;
            bool bare = prev != '.' && prev != '%' && prev != '$' && !(k < n && src[k] == '(');
            if (bare && in_scope(l, src + i, j - i))
                fj_buf_append(&b, "%", 1);
            fj_buf_append(&b, src + i, j - i);
            i = j;
            prev = 'a';
        } else {
            fj_buf_append(&b, &c, 1);
            if (!isspace((unsigned char)c))
                prev = c;
            i++;
        }
    }
    char *out = fj_buf_take(&b, NULL);
    if (!out)
        abort();
    return out;
}

static fp_expr *compile(loader *l, const char *where, const char *what, const char *src)
{
    if (!src)
        return NULL;
    char *text = rewrite_vars(l, src);
    fp_compile_options o = {.schema = l->opts->schema, .functions = l->opts->functions};
    fp_error err;
    fp_expr *e = fp_compile_with(text, &o, &err);
    if (!e)
        problem(l, where, "%s (%s): %s (at character %d)", what, src, err.message, err.position + 1);
    free(text);
    return e;
}

/* The end of an identifier starting at p (p itself when there is none). */
static const char *ident_end(const char *p)
{
    if (!isalpha((unsigned char)*p) && *p != '_')
        return p;
    while (isalnum((unsigned char)*p) || *p == '_')
        p++;
    return p;
}

/* `$this is Type` (p after `$this`): the type, or NULL. */
static const fs_type *recognise_is(const fs_schema *schema, const char *p)
{
    while (isspace((unsigned char)*p))
        p++;
    if (strncmp(p, "is", 2) || !isspace((unsigned char)p[2]))
        return NULL;
    p += 2;
    while (isspace((unsigned char)*p))
        p++;
    const char *name = p, *end = ident_end(p);
    for (p = end; isspace((unsigned char)*p); p++)
        ;
    return end > name && !*p ? fs_type_by_name(schema ? schema : fs_r4(), name, (size_t)(end - name)) : NULL;
}

static const char *skip_ws(const char *p)
{
    while (isspace((unsigned char)*p))
        p++;
    return p;
}

/* p (after blanks) starts with word w, not followed by an identifier character: the text after it, else NULL. */
static const char *word(const char *p, const char *w)
{
    p = skip_ws(p);
    size_t n = strlen(w);
    if (strncmp(p, w, n) || (isalnum((unsigned char)w[n - 1]) && (isalnum((unsigned char)p[n]) || p[n] == '_')))
        return NULL;
    return p + n;
}

/* A 'text' literal without escapes at p (after blanks): the text after it, with *lit and *len, else NULL. */
static const char *literal(const char *p, const char **lit, size_t *len)
{
    p = skip_ws(p);
    if (*p++ != '\'')
        return NULL;
    *lit = p;
    while (*p && *p != '\'' && *p != '\\')
        p++;
    if (*p != '\'')
        return NULL;
    *len = (size_t)(p - *lit);
    return p + 1;
}

static void add_alt(sm_equals *q, const char *lit, size_t len)
{
    q->alts = realloc(q->alts, (q->alt_count + 1) * sizeof *q->alts);
    q->alt_lens = realloc(q->alt_lens, (q->alt_count + 1) * sizeof *q->alt_lens);
    if (!q->alts || !q->alt_lens || !(q->alts[q->alt_count] = strndup(lit, len)))
        abort();
    q->alt_lens[q->alt_count++] = len;
}

/* `$this in ('a' | 'b' ...)` at p: the text after it (its texts added to q), else NULL. */
static const char *recognise_in(const char *p, sm_equals *q)
{
    if (!(p = word(p, "$this")) || !(p = word(p, "in")) || !(p = word(p, "(")))
        return NULL;
    const char *lit;
    size_t len;
    do {
        if (!(p = literal(p, &lit, &len)))
            return NULL;
        add_alt(q, lit, len);
    } while ((p = skip_ws(p), *p == '|') && p++);
    return word(p, ")");
}

/* `$this = 'a' or $this = 'b' ...` (two or more) at p: the text after it, else NULL. */
static const char *recognise_or(const char *p, sm_equals *q)
{
    const char *lit;
    size_t len;
    for (;;) {
        if (!(p = word(p, "$this")) || !(p = word(p, "=")) || !(p = literal(p, &lit, &len)))
            return NULL;
        add_alt(q, lit, len);
        const char *next = word(p, "or");
        if (!next)
            break;
        p = next;
    }
    return q->alt_count >= 2 ? p : NULL;
}

/* The set forms of sm_equals over the whole source; q->alts stays NULL when it is none of them. */
static void recognise_set(const char *src, sm_equals *q)
{
    const char *p, *end = NULL;
    if ((p = recognise_in(src, q)) != NULL) {
        end = p;
    } else if (!q->alt_count && (p = word(src, "(")) && (p = recognise_in(p, q)) && (p = word(p, ")")) &&
               (p = word(p, ".")) && (p = word(p, "not")) && (p = word(p, "(")) && (p = word(p, ")"))) {
        end = p;
        q->negate = true;
    } else if (!q->alt_count && (p = recognise_or(src, q)) != NULL) {
        end = p;
    }
    if (end && !*skip_ws(end))
        return;
    for (size_t i = 0; i < q->alt_count; i++)
        free(q->alts[i]);
    free(q->alts), free(q->alt_lens);
    q->alts = NULL, q->alt_lens = NULL, q->alt_count = 0, q->negate = false;
}

/* An element name at p (after blanks): not a keyword, not a function call; the text after it, else NULL. */
static const char *element_name(const char *p, char **name, size_t *len)
{
    static const char *const keywords[] = {"and", "or",   "xor",   "implies",  "is",    "as",     "in",    "div",
                                           "mod", "true", "false", "contains", "where", "exists", "empty", "not"};
    p = skip_ws(p);
    const char *end = ident_end(p);
    size_t n = (size_t)(end - p);
    if (!n || *skip_ws(end) == '(')
        return NULL;
    for (size_t i = 0; i < sizeof keywords / sizeof *keywords; i++)
        if (strlen(keywords[i]) == n && !strncmp(keywords[i], p, n))
            return NULL;
    if (!(*name = strndup(p, n)))
        abort();
    *len = n;
    return end;
}

/* `m = 'text'` of a where(): condition i of t; the text after it, else NULL. */
static const char *path_condition(const char *p, sm_pathtest *t)
{
    const char *lit;
    size_t i = t->conds;
    if (!(p = element_name(p, &t->member[i], &t->member_len[i])))
        return NULL;
    t->conds++;
    if (!(p = word(p, "=")) || !(p = literal(p, &lit, &t->text_len[i])))
        return NULL;
    if (!(t->text[i] = strndup(lit, t->text_len[i])))
        abort();
    return p;
}

static void free_pathtest(sm_pathtest *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < 2; i++)
        free(t->step[i]), free(t->member[i]), free(t->text[i]);
    free(t);
}

/* The path forms of sm_pathtest over the whole source, or NULL. */
static sm_pathtest *recognise_path(const char *p)
{
    sm_pathtest *t = calloc(1, sizeof *t);
    if (!t)
        abort();
    const char *lit, *next;
    bool ok = (p = element_name(p, &t->step[0], &t->step_len[0])) != NULL;
    t->steps = ok;
    if (ok && *p == '.' && (next = element_name(p + 1, &t->step[1], &t->step_len[1])) != NULL) {
        t->steps = 2;
        p = next;
    }
    if (ok && (next = word(p, ".")) && (next = word(next, "where")) && (next = word(next, "("))) {
        ok = (p = path_condition(next, t)) != NULL;
        if (ok && (next = word(p, "and")) != NULL)
            ok = (p = path_condition(next, t)) != NULL;
        ok = ok && (p = word(p, ")")) && (p = word(p, "."));
        if (ok && (next = word(p, "exists")) != NULL)
            p = next;
        else if (ok && (next = word(p, "empty")) != NULL)
            p = next, t->negate = true;
        else
            ok = false;
        ok = ok && (p = word(p, "(")) && (p = word(p, ")"));
    } else if (ok) {
        if ((next = word(p, "!=")) != NULL)
            p = next, t->negate = true;
        else
            ok = (p = word(p, "=")) != NULL;
        ok = ok && (p = literal(p, &lit, &t->text_len[0])) != NULL;
        if (ok && !(t->text[0] = strndup(lit, t->text_len[0])))
            abort();
    }
    if (ok && !*skip_ws(p))
        return t;
    free_pathtest(t);
    return NULL;
}

static void recognise_plain(const loader *l, const char *p, sm_equals *q);

/* Recognise the forms of sm_equals (and sm_pathtest) in an expression's source. */
static void recognise_equals(const loader *l, const fp_expr *e, sm_equals *q)
{
    *q = (sm_equals){0};
    if (!e)
        return;
    const char *p = fp_expr_source(e);
    recognise_set(p, q);
    if (q->alts)
        return;
    recognise_plain(l, p, q);
    if (!q->literal && !q->is_type)
        q->path = recognise_path(p);
}

/* The forms of sm_equals without a set: `name = 'text'`, `$this = 'text'`, `$this is Type`. */
static void recognise_plain(const loader *l, const char *p, sm_equals *q)
{
    const char *name = NULL, *name_end = NULL;
    while (isspace((unsigned char)*p))
        p++;
    if (!strncmp(p, "$this", 5) && ident_end(p + 1) == p + 5) {
        p += 5;
        if ((q->is_type = recognise_is(l->opts->schema, p)) != NULL)
            return;
    } else {
        name = p;
        name_end = ident_end(p);
        size_t n = (size_t)(name_end - name);
        if (!n || (n == 4 && !strncmp(name, "true", 4)) || (n == 5 && !strncmp(name, "false", 5)))
            return;
        p = name_end;
    }
    while (isspace((unsigned char)*p))
        p++;
    if (*p++ != '=')
        return;
    while (isspace((unsigned char)*p))
        p++;
    if (*p++ != '\'')
        return;
    const char *lit = p;
    while (*p && *p != '\'' && *p != '\\')
        p++;
    if (*p != '\'')
        return;
    const char *lit_end = p++;
    while (isspace((unsigned char)*p))
        p++;
    if (*p)
        return;
    q->literal = strndup(lit, (size_t)(lit_end - lit));
    q->member = name ? strndup(name, (size_t)(name_end - name)) : NULL;
    if (!q->literal || (name && !q->member))
        abort();
    q->literal_len = (size_t)(lit_end - lit);
    q->member_len = name ? (size_t)(name_end - name) : 0;
}

static void free_equals(sm_equals *q)
{
    free_pathtest(q->path);
    free(q->literal);
    free(q->member);
    for (size_t i = 0; i < q->alt_count; i++)
        free(q->alts[i]);
    free(q->alts);
    free(q->alt_lens);
}

/* ---- values -------------------------------------------------------------- */

static bool load_value(loader *l, const json_object *o, const char *prefix, sm_value *v)
{
    char key[48];
    json_object *x;
    *v = (sm_value){.kind = SM_V_NONE};
#define TRY(suffix) (snprintf(key, sizeof key, "%s" suffix, prefix), (x = json_object_object_get(o, key)) != NULL)
    if (TRY("Id")) {
        v->kind = SM_V_ID;
        v->text = dup(json_object_get_string(x));
    } else if (TRY("String")) {
        v->kind = SM_V_STRING;
        v->text = dup(json_object_get_string(x));
    } else if (TRY("Integer")) {
        v->kind = SM_V_INTEGER;
        v->integer = json_object_get_int64(x);
    } else if (TRY("Decimal")) {
        v->kind = SM_V_DECIMAL;
        v->text = dup(json_object_to_json_string_ext(x, JSON_C_TO_STRING_PLAIN));
    } else if (TRY("Boolean")) {
        v->kind = SM_V_BOOLEAN;
        v->boolean = json_object_get_boolean(x);
    }
#undef TRY
    (void)l;
    return true;
}

static void free_value(sm_value *v)
{
    free(v->text);
    fp_expr_free(v->path);
}

/* ---- transforms ---------------------------------------------------------- */

static const struct {
    const char *name;
    sm_transform t;
    unsigned min, max;
} TRANSFORMS[] = {{"create", SM_TR_CREATE, 0, 1},
                  {"copy", SM_TR_COPY, 1, 1},
                  {"truncate", SM_TR_TRUNCATE, 2, 2},
                  {"escape", SM_TR_ESCAPE, 2, 3},
                  {"cast", SM_TR_CAST, 1, 2},
                  {"append", SM_TR_APPEND, 1, 16},
                  {"translate", SM_TR_TRANSLATE, 3, 3},
                  {"reference", SM_TR_REFERENCE, 1, 1},
                  {"dateOp", SM_TR_DATEOP, 1, 4},
                  {"uuid", SM_TR_UUID, 0, 0},
                  {"pointer", SM_TR_POINTER, 1, 1},
                  {"evaluate", SM_TR_EVALUATE, 1, 2},
                  {"cc", SM_TR_CC, 1, 3},
                  {"c", SM_TR_C, 2, 3},
                  {"qty", SM_TR_QTY, 1, 4},
                  {"id", SM_TR_ID, 2, 3},
                  {"cp", SM_TR_CP, 1, 2}};

const char *sm_transform_name(sm_transform t)
{
    for (size_t i = 0; i < sizeof TRANSFORMS / sizeof *TRANSFORMS; i++)
        if (TRANSFORMS[i].t == t)
            return TRANSFORMS[i].name;
    return "(none)";
}

/* Is parameter i of transform t a type name or code rather than a variable when written as an id? */
static bool id_is_name(sm_transform t, size_t i)
{
    return (t == SM_TR_CREATE && i == 0) || (t == SM_TR_CAST && i == 1) || (t == SM_TR_TRANSLATE && i > 0) ||
           (t == SM_TR_DATEOP && i > 0);
}

static bool load_param(loader *l, const char *where, sm_target *t, size_t i, const json_object *p)
{
    sm_value *v = &t->params[i];
    load_value(l, p, "value", v);
    if (v->kind == SM_V_NONE)
        return problem(l, where, "parameter %zu of %s has no value (valueId, valueString, ...)", i + 1,
                       sm_transform_name(t->transform));
    if (v->kind != SM_V_ID)
        return true;
    size_t head = strcspn(v->text, ".");
    if (!in_scope(l, v->text, head)) {
        if (id_is_name(t->transform, i)) {
            v->kind = SM_V_STRING;
            return true;
        }
        return problem(l, where, "%s(): '%.*s' is not a variable in scope", sm_transform_name(t->transform), (int)head,
                       v->text);
    }
    if (v->text[head] == '.') {
        v->path = compile(l, where, "parameter path", v->text + head + 1);
        v->text[head] = 0;
        return v->path != NULL;
    }
    return true;
}

static bool load_transform(loader *l, const char *where, sm_target *t, const json_object *o)
{
    const char *name = jstr(o, "transform");
    size_t np = jlen(o, "parameter");
    if (!name) {
        t->transform = SM_TR_NONE;
        return np == 0 || problem(l, where, "parameters given without a transform");
    }
    size_t k = 0;
    while (k < sizeof TRANSFORMS / sizeof *TRANSFORMS && strcmp(TRANSFORMS[k].name, name))
        k++;
    if (k == sizeof TRANSFORMS / sizeof *TRANSFORMS)
        return problem(l, where, "unknown transform '%s'", name);
    t->transform = TRANSFORMS[k].t;
    if (np < TRANSFORMS[k].min || np > TRANSFORMS[k].max)
        return problem(l, where, "%s() takes %u to %u parameters, not %zu", name, TRANSFORMS[k].min, TRANSFORMS[k].max,
                       np);
    t->params = alloc_array(np, sizeof *t->params);
    t->param_count = np;
    for (size_t i = 0; i < np; i++) {
        const json_object *p = jat(o, "parameter", i);
        if (t->transform == SM_TR_EVALUATE && i == np - 1) {
            /* the last parameter of evaluate is the expression */
            load_value(l, p, "value", &t->params[i]);
            if (t->params[i].kind != SM_V_STRING)
                return problem(l, where, "evaluate(): the expression must be a string");
            t->expression = compile(l, where, "evaluate()", t->params[i].text);
            if (!t->expression)
                return false;
        } else if (!load_param(l, where, t, i, p)) {
            return false;
        }
    }
    return true;
}

/* ---- rules --------------------------------------------------------------- */

static bool load_source(loader *l, const char *where, sm_source *s, const json_object *o)
{
    s->context = dup(jstr(o, "context"));
    s->element = dup(jstr(o, "element"));
    s->type = dup(jstr(o, "type"));
    s->variable = dup(jstr(o, "variable"));
    json_object *min = json_object_object_get(o, "min");
    s->min = min ? json_object_get_int(min) : -1;
    const char *max = jstr(o, "max");
    s->max = !max ? -1 : !strcmp(max, "*") ? -2 : atol(max);
    load_value(l, o, "defaultValue", &s->default_value);
    const char *lm = jstr(o, "listMode");
    static const char *const modes[] = {"", "first", "not_first", "last", "not_last", "only_one"};
    s->list_mode = SM_SRC_ALL;
    for (size_t i = 1; lm && i < sizeof modes / sizeof *modes; i++)
        if (!strcmp(lm, modes[i]))
            s->list_mode = (sm_source_list)i;
    if (lm && s->list_mode == SM_SRC_ALL)
        return problem(l, where, "unknown source list mode '%s'", lm);
    if (!s->context)
        return problem(l, where, "a source needs a context (a variable)");
    if (!in_scope(l, s->context, strlen(s->context)))
        return problem(l, where, "source context '%s' is not a variable in scope", s->context);
    scope_push(l, s->variable);
    const char *cond = jstr(o, "condition"), *check = jstr(o, "check"), *log = jstr(o, "logMessage");
    if (cond && !(s->condition = compile(l, where, "where", cond)))
        return false;
    if (check && !(s->check = compile(l, where, "check", check)))
        return false;
    if (log && !(s->log = compile(l, where, "log", log)))
        return false;
    recognise_equals(l, s->condition, &s->condition_eq);
    recognise_equals(l, s->check, &s->check_eq);
    s->element_len = s->element ? strlen(s->element) : 0;
    return true;
}

static bool load_target(loader *l, const char *where, sm_target *t, const json_object *o)
{
    t->context = dup(jstr(o, "context"));
    t->element = dup(jstr(o, "element"));
    t->variable = dup(jstr(o, "variable"));
    for (size_t i = 0; i < jlen(o, "listMode"); i++) {
        const char *m = json_object_get_string(jat(o, "listMode", i));
        unsigned bit = !strcmp(m, "first")     ? SM_TGT_FIRST
                       : !strcmp(m, "last")    ? SM_TGT_LAST
                       : !strcmp(m, "share")   ? SM_TGT_SHARE
                       : !strcmp(m, "collate") ? SM_TGT_COLLATE
                                               : 0;
        if (!bit)
            return problem(l, where, "unknown target list mode '%s'", m);
        t->list_modes |= bit;
    }
    if (t->context && !in_scope(l, t->context, strlen(t->context)))
        return problem(l, where, "target context '%s' is not a variable in scope", t->context);
    if (t->element && !t->context)
        return problem(l, where, "target element '%s' has no context", t->element);
    if (!load_transform(l, where, t, o))
        return false;
    if (!t->context && t->transform == SM_TR_NONE)
        return problem(l, where, "a target needs a context or a transform");
    scope_push(l, t->variable);
    return true;
}

static bool load_rules(loader *l, const char *group, const json_object *owner, sm_rule **rules, size_t *count);

static bool load_dependent(loader *l, const char *where, sm_dependent *d, const json_object *o)
{
    d->name = dup(jstr(o, "name"));
    if (!d->name)
        return problem(l, where, "a dependent rule needs a group name");
    d->var_count = jlen(o, "variable");
    d->vars = alloc_array(d->var_count, sizeof *d->vars);
    for (size_t i = 0; i < d->var_count; i++) {
        const char *v = json_object_get_string(jat(o, "variable", i));
        d->vars[i] = dup(v);
        if (!in_scope(l, v, strlen(v)))
            return problem(l, where, "argument '%s' of %s() is not a variable in scope", v, d->name);
    }
    return true;
}

static bool load_rule(loader *l, const char *group, sm_rule *r, const json_object *o)
{
    r->name = dup(jstr(o, "name") ? jstr(o, "name") : "(unnamed)");
    r->documentation = dup(jstr(o, "documentation"));
    char where[300];
    snprintf(where, sizeof where, "group %s, rule '%s'", group, r->name);
    r->where = dup(where);
    size_t mark = l->scope_count;
    r->source_count = jlen(o, "source");
    r->sources = alloc_array(r->source_count, sizeof *r->sources);
    r->target_count = jlen(o, "target");
    r->targets = alloc_array(r->target_count, sizeof *r->targets);
    r->dependent_count = jlen(o, "dependent");
    r->dependents = alloc_array(r->dependent_count, sizeof *r->dependents);
    bool ok = r->source_count > 0 || problem(l, where, "a rule needs at least one source");
    for (size_t i = 0; ok && i < r->source_count; i++)
        ok = load_source(l, where, &r->sources[i], jat(o, "source", i));
    for (size_t i = 0; ok && i < r->target_count; i++)
        ok = load_target(l, where, &r->targets[i], jat(o, "target", i));
    for (size_t i = 0; ok && i < r->dependent_count; i++)
        ok = load_dependent(l, where, &r->dependents[i], jat(o, "dependent", i));
    ok = ok && load_rules(l, group, o, &r->rules, &r->rule_count);
    l->scope_count = mark;
    return ok;
}

static bool load_rules(loader *l, const char *group, const json_object *owner, sm_rule **rules, size_t *count)
{
    *count = jlen(owner, "rule");
    *rules = alloc_array(*count, sizeof **rules);
    for (size_t i = 0; i < *count; i++)
        if (!load_rule(l, group, &(*rules)[i], jat(owner, "rule", i)))
            return false;
    return true;
}

static bool load_group(loader *l, sm_map *m, sm_group *g, const json_object *o)
{
    g->map = m;
    g->name = dup(jstr(o, "name"));
    g->extends = dup(jstr(o, "extends"));
    if (!g->name)
        return problem(l, NULL, "a group needs a name");
    const char *tm = jstr(o, "typeMode");
    g->type_mode = !tm || !strcmp(tm, "none") ? SM_TYPES_NONE
                   : !strcmp(tm, "types")     ? SM_TYPES_TYPES
                                              : SM_TYPES_TYPE_AND_TYPES;
    g->input_count = jlen(o, "input");
    g->inputs = alloc_array(g->input_count, sizeof *g->inputs);
    l->scope_count = 0;
    char where[200];
    snprintf(where, sizeof where, "group %s", g->name);
    for (size_t i = 0; i < g->input_count; i++) {
        json_object *in = jat(o, "input", i);
        g->inputs[i].name = dup(jstr(in, "name"));
        g->inputs[i].type = dup(jstr(in, "type"));
        const char *mode = jstr(in, "mode");
        g->inputs[i].target = mode && !strcmp(mode, "target");
        if (!g->inputs[i].name)
            return problem(l, where, "input %zu has no name", i + 1);
        scope_push(l, g->inputs[i].name);
    }
    return load_rules(l, g->name, o, &g->rules, &g->rule_count);
}

/* ---- resolving groups ---------------------------------------------------- */

static const sm_group *find_group_depth(const sm_map *m, const char *name, int depth)
{
    for (size_t i = 0; i < m->group_count; i++)
        if (m->groups[i].name && !strcmp(m->groups[i].name, name))
            return &m->groups[i];
    for (size_t i = 0; depth < 8 && i < m->import_count; i++) {
        const sm_group *g = find_group_depth(m->imports[i], name, depth + 1);
        if (g)
            return g;
    }
    return NULL;
}

const sm_group *sm_find_group(const sm_map *m, const char *name)
{
    return find_group_depth(m, name, 0);
}

static bool resolve_rules(loader *l, const sm_map *m, sm_rule *rules, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        sm_rule *r = &rules[i];
        for (size_t k = 0; k < r->dependent_count; k++) {
            sm_dependent *d = &r->dependents[k];
            d->group = sm_find_group(m, d->name);
            if (!d->group)
                problem(l, r->where, "then %s(): no group of that name in the map or its imports", d->name);
            else if (d->group->input_count != d->var_count)
                problem(l, r->where, "then %s(): the group has %zu inputs, given %zu arguments", d->name,
                        d->group->input_count, d->var_count);
        }
        resolve_rules(l, m, r->rules, r->rule_count);
    }
    return !l->failed;
}

static bool url_matches(const char *pattern, const char *url)
{
    size_t n = strlen(pattern);
    if (n && pattern[n - 1] == '*')
        return !strncmp(pattern, url, n - 1);
    return !strcmp(pattern, url);
}

static void resolve_imports(loader *l, sm_map *m, const json_object *o)
{
    size_t n = jlen(o, "import");
    const sm_options *opts = l->opts;
    for (size_t i = 0; i < n; i++) {
        const char *pattern = json_object_get_string(jat(o, "import", i));
        bool found = false;
        for (size_t k = 0; k < opts->import_count; k++) {
            if (!url_matches(pattern, opts->imports[k]->url))
                continue;
            if (!fa_reserve(&m->imports, &(size_t){m->import_count}, m->import_count + 1, sizeof *m->imports))
                abort();
            m->imports[m->import_count++] = opts->imports[k];
            found = true;
        }
        if (!found)
            problem(l, NULL, "imports \"%s\": no such map was given to load with", pattern);
    }
}

static bool resolve(loader *l, sm_map *m)
{
    for (size_t i = 0; i < m->group_count; i++) {
        sm_group *g = &m->groups[i];
        for (size_t k = 0; k < i; k++)
            if (!strcmp(m->groups[k].name, g->name))
                problem(l, NULL, "group %s is defined twice", g->name);
        if (g->extends) {
            g->base = sm_find_group(m, g->extends);
            if (!g->base)
                problem(l, NULL, "group %s extends %s: no group of that name", g->name, g->extends);
            else if (g->base->input_count != g->input_count)
                problem(l, NULL, "group %s extends %s: the inputs differ in number", g->name, g->extends);
        }
        resolve_rules(l, m, g->rules, g->rule_count);
    }
    /* a cycle of extends would never end */
    for (size_t i = 0; i < m->group_count; i++) {
        const sm_group *g = m->groups[i].base;
        for (int steps = 0; g && steps <= (int)m->group_count + 8; steps++)
            g = g->base;
        if (g)
            problem(l, NULL, "group %s: 'extends' goes round in a circle", m->groups[i].name);
    }
    return !l->failed;
}

/* ---- interning variable names ------------------------------------------- */

typedef void (*name_fn)(sm_map *m, char **field);

static void rule_names(sm_map *m, sm_rule *rules, size_t n, name_fn fn)
{
    for (size_t i = 0; i < n; i++) {
        sm_rule *r = &rules[i];
        for (size_t k = 0; k < r->source_count; k++)
            fn(m, &r->sources[k].context), fn(m, &r->sources[k].variable);
        for (size_t k = 0; k < r->target_count; k++) {
            sm_target *t = &r->targets[k];
            fn(m, &t->context), fn(m, &t->variable);
            for (size_t p = 0; p < t->param_count; p++)
                if (t->params[p].kind == SM_V_ID)
                    fn(m, &t->params[p].text);
        }
        for (size_t k = 0; k < r->dependent_count; k++)
            for (size_t v = 0; v < r->dependents[k].var_count; v++)
                fn(m, &r->dependents[k].vars[v]);
        rule_names(m, r->rules, r->rule_count, fn);
    }
}

/* fn over every field holding a variable's name. */
static void each_name(sm_map *m, name_fn fn)
{
    for (size_t i = 0; i < m->group_count; i++) {
        for (size_t k = 0; k < m->groups[i].input_count; k++)
            fn(m, &m->groups[i].inputs[k].name);
        rule_names(m, m->groups[i].rules, m->groups[i].rule_count, fn);
    }
}

/* The field's text becomes the map's one copy of it (the table takes the string, or it is freed). */
static void intern(sm_map *m, char **field)
{
    if (!*field)
        return;
    for (size_t i = 0; i < m->name_count; i++)
        if (!strcmp(m->names[i], *field)) {
            free(*field);
            *field = m->names[i];
            return;
        }
    size_t cap = m->name_count;
    if (!fa_reserve(&m->names, &cap, m->name_count + 1, sizeof *m->names))
        abort();
    m->names[m->name_count++] = *field;
}

/* Before freeing an interned map: the fields only borrow from the table. */
static void unlink_name(sm_map *m, char **field)
{
    (void)m;
    *field = NULL;
}

/* ---- loading ------------------------------------------------------------- */

static void load_header(sm_map *m, const json_object *o)
{
    m->url = dup(jstr(o, "url"));
    m->name = dup(jstr(o, "name"));
    m->structure_count = jlen(o, "structure");
    m->structures = alloc_array(m->structure_count, sizeof *m->structures);
    for (size_t i = 0; i < m->structure_count; i++) {
        json_object *s = jat(o, "structure", i);
        m->structures[i].url = dup(jstr(s, "url"));
        m->structures[i].alias = dup(jstr(s, "alias"));
        m->structures[i].mode = dup(jstr(s, "mode"));
    }
    for (size_t i = 0; i < jlen(o, "contained"); i++) {
        json_object *c = jat(o, "contained", i);
        const char *rt = jstr(c, "resourceType");
        if (!rt || strcmp(rt, "ConceptMap"))
            continue;
        size_t cap = m->conceptmap_count;
        if (!fa_reserve(&m->conceptmaps, &cap, m->conceptmap_count + 1, sizeof *m->conceptmaps))
            abort();
        m->conceptmaps[m->conceptmap_count++] = json_object_get(c);
    }
}

sm_map *sm_load(const json_object *o, const sm_options *opts, oo_list *issues)
{
    sm_options defaults = {0};
    loader l = {.opts = opts ? opts : &defaults, .issues = issues};
    const char *rt = jstr(o, "resourceType");
    if (!o || !rt || strcmp(rt, "StructureMap")) {
        oo_add(issues, OO_ERROR, OO_STRUCTURE, NULL, 0, 0, "not a StructureMap");
        return NULL;
    }
    static _Atomic uint64_t next_id = 1;
    sm_map *m = calloc(1, sizeof *m);
    if (!m)
        abort();
    m->id = atomic_fetch_add(&next_id, 1);
    load_header(m, o);
    if (!m->url)
        problem(&l, NULL, "the map has no url");
    resolve_imports(&l, m, o);
    m->group_count = jlen(o, "group");
    m->groups = alloc_array(m->group_count, sizeof *m->groups);
    if (!m->group_count)
        problem(&l, NULL, "the map has no groups");
    for (size_t i = 0; !l.failed && i < m->group_count; i++)
        load_group(&l, m, &m->groups[i], jat(o, "group", i));
    if (!l.failed)
        resolve(&l, m);
    free(l.scope);
    if (l.failed) {
        sm_free(m);
        return NULL;
    }
    each_name(m, intern);
    return m;
}

sm_map *sm_load_json(const char *text, size_t len, const sm_options *opts, oo_list *issues)
{
    struct json_tokener *tok = json_tokener_new();
    if (!tok)
        abort();
    json_object *o = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error e = json_tokener_get_error(tok);
    json_tokener_free(tok);
    if (!o || e != json_tokener_success) {
        oo_add(issues, OO_ERROR, OO_STRUCTURE, NULL, 0, 0, "the StructureMap is not valid JSON: %s",
               json_tokener_error_desc(e));
        json_object_put(o);
        return NULL;
    }
    sm_map *m = sm_load(o, opts, issues);
    json_object_put(o);
    return m;
}

/* ---- freeing ------------------------------------------------------------- */

static void free_rules(sm_rule *rules, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        sm_rule *r = &rules[i];
        for (size_t k = 0; k < r->source_count; k++) {
            sm_source *s = &r->sources[k];
            free(s->context), free(s->element), free(s->type), free(s->variable);
            free_value(&s->default_value);
            fp_expr_free(s->condition), fp_expr_free(s->check), fp_expr_free(s->log);
            free_equals(&s->condition_eq), free_equals(&s->check_eq);
        }
        for (size_t k = 0; k < r->target_count; k++) {
            sm_target *t = &r->targets[k];
            free(t->context), free(t->element), free(t->variable);
            for (size_t p = 0; p < t->param_count; p++)
                free_value(&t->params[p]);
            free(t->params);
            fp_expr_free(t->expression);
            free(atomic_load(&t->engine_memo));
        }
        for (size_t k = 0; k < r->dependent_count; k++) {
            for (size_t v = 0; v < r->dependents[k].var_count; v++)
                free(r->dependents[k].vars[v]);
            free(r->dependents[k].vars);
            free(r->dependents[k].name);
        }
        free_rules(r->rules, r->rule_count);
        free(r->sources), free(r->targets), free(r->dependents), free(r->rules);
        free(r->name), free(r->documentation), free(r->where);
    }
}

void sm_free(sm_map *m)
{
    if (!m)
        return;
    if (m->names) {
        each_name(m, unlink_name);
        for (size_t i = 0; i < m->name_count; i++)
            free(m->names[i]);
        free(m->names);
    }
    for (size_t i = 0; i < m->group_count; i++) {
        sm_group *g = &m->groups[i];
        for (size_t k = 0; k < g->input_count; k++)
            free(g->inputs[k].name), free(g->inputs[k].type);
        free(g->inputs);
        free_rules(g->rules, g->rule_count);
        free(g->rules);
        free(g->name), free(g->extends);
    }
    for (size_t i = 0; i < m->structure_count; i++)
        free(m->structures[i].url), free(m->structures[i].alias), free(m->structures[i].mode);
    for (size_t i = 0; i < m->conceptmap_count; i++)
        json_object_put(m->conceptmaps[i]);
    free(m->conceptmaps);
    free(m->structures);
    free(m->groups);
    free(m->imports);
    free(m->url), free(m->name);
    free(m);
}

const char *sm_structure_url(const sm_map *m, const char *type)
{
    for (size_t i = 0; type && i < m->structure_count; i++) {
        const sm_structure *s = &m->structures[i];
        if ((s->alias && !strcmp(s->alias, type)) || (s->url && !strcmp(s->url, type)))
            return s->url;
    }
    return NULL;
}
