/*
 * gateway/search/search.c — parsing FHIR search parameters (see search.h).
 *
 * The query string is split on '&' into name[:modifier]=value pairs; names
 * starting with '_' that are result parameters are taken apart here, the
 * others are looked up among the type's search parameters. Each value list
 * is split on unescaped ',' (OR) and each value is read according to the
 * parameter's kind.
 */
#include "gateway/search/search.h"
#include "gateway/util/hex.h"

#include "fhir/datetime.h"
#include "fhir/reference.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers ---- */

char *sq_url_decode(const char *src, size_t len)
{
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '%') {
            int hi = i + 2 < len ? hex_digit_value(src[i + 1]) : -1,
                lo = i + 2 < len ? hex_digit_value(src[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                free(out);
                return NULL;
            }
            out[n++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[n++] = src[i] == '+' ? ' ' : src[i];
        }
    }
    out[n] = '\0';
    if (memchr(out, '\0', n)) { /* %00 would cut strings short later */
        free(out);
        return NULL;
    }
    return out;
}

bool sq_date_range(const char *text, size_t len, int64_t *lo_ms, int64_t *hi_ms)
{
    fdt_value v;
    if (fdt_parse(FDT_FORM_SEARCH, text, len, &v))
        return false;
    fdt_range(&v, lo_ms, hi_ms);
    return true;
}

/* ---- values ---- */

static bool take_prefix(const char **v, sq_prefix *p)
{
    static const char *const names[] = {"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"};
    *p = SQ_EQ;
    for (int i = 0; i < 9; i++)
        if (!strncmp(*v, names[i], 2) && ((*v)[2] == '-' || isdigit((unsigned char)(*v)[2]))) {
            *p = (sq_prefix)i;
            *v += 2;
            return true;
        }
    return false;
}

/* Unescape FHIR search escapes (\, \| \$ \\). */
static char *unescape(const char *s, size_t len)
{
    char *out = malloc(len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\\' && i + 1 < len && strchr(",|$\\", s[i + 1]))
            i++;
        out[n++] = s[i];
    }
    out[n] = '\0';
    return out;
}

/* Position of the first unescaped c in s[0..len), or len. */
static size_t find_unescaped(const char *s, size_t len, char c)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\\') {
            i++;
            continue;
        }
        if (s[i] == c)
            return i;
    }
    return len;
}

static bool parse_number(const char *v, sq_value *out)
{
    char *end;
    out->number = strtod(v, &end);
    if (end == v || !isfinite(out->number))
        return false;
    const char *dot = strchr(v, '.');
    out->scale = dot ? (int)strspn(dot + 1, "0123456789") : 0;
    if (*end == '|') { /* quantity: number|system|code; an empty system or code means any */
        const char *system = end + 1, *bar = strchr(system, '|');
        const char *code = bar ? bar + 1 : system; /* number|code: lenient, a code alone */
        if (bar && bar > system)
            out->unit_system = strndup(system, (size_t)(bar - system));
        if (*code)
            out->unit = strdup(code);
        return true;
    }
    return *end == '\0';
}

/* value rounded to `digits` decimals, as the decimal text would read (DBL_MAX has 309 digits). */
static double rounded(double value, int digits)
{
    char text[400];
    snprintf(text, sizeof text, "%.*f", digits, value);
    return strtod(text, NULL);
}

void sq_number_range(const sq_value *v, double *lo, double *hi)
{
    double half = 0.5;
    for (int i = 0; i < v->scale; i++)
        half /= 10;
    int digits = v->scale + 1 > 17 ? 17 : v->scale + 1;
    *lo = rounded(v->number - half, digits);
    *hi = rounded(v->number + half, digits);
}

static void parse_reference(const char *v, sq_value *out)
{
    fr_parts parts;
    if (!fr_parse(v, strlen(v), &parts)) {
        out->ref_id = strdup(v); /* a bare id (any type) */
        return;
    }
    out->ref_type = strndup(parts.type, parts.type_len);
    out->ref_id = strndup(parts.id, parts.id_len);
}

static bool parse_value(const fs_search_param *def, sq_modifier mod, const char *raw, size_t len, sq_value *out,
                        const char **why)
{
    memset(out, 0, sizeof *out);
    out->text = unescape(raw, len);
    const char *v = out->text;
    if (mod == SQ_MOD_MISSING) {
        if (strcmp(v, "true") && strcmp(v, "false")) {
            *why = ":missing takes true or false";
            return false;
        }
        out->missing = !strcmp(v, "true");
        return true;
    }
    switch (def->kind) {
    case FS_SEARCH_DATE:
        take_prefix(&v, &out->prefix);
        if (!sq_date_range(v, strlen(v), &out->lo_ms, &out->hi_ms)) {
            *why = "not a date or dateTime (YYYY, YYYY-MM, YYYY-MM-DD, or with a time and timezone)";
            return false;
        }
        return true;
    case FS_SEARCH_NUMBER:
    case FS_SEARCH_QUANTITY:
        take_prefix(&v, &out->prefix);
        if (!parse_number(v, out)) {
            *why = "not a number";
            return false;
        }
        return true;
    case FS_SEARCH_TOKEN: {
        size_t bar = find_unescaped(raw, len, '|');
        if (bar < len) {
            out->system = unescape(raw, bar);
            out->code = bar + 1 < len ? unescape(raw + bar + 1, len - bar - 1) : NULL;
        } else {
            out->code = unescape(raw, len);
        }
        return true;
    }
    case FS_SEARCH_REFERENCE: parse_reference(v, out); return true;
    default: return true; /* string, uri: the text */
    }
}

static void free_value(sq_value *v)
{
    free(v->text);
    free(v->system);
    free(v->code);
    free(v->unit);
    free(v->unit_system);
    free(v->ref_type);
    free(v->ref_id);
}

/* ---- parameters ---- */

static bool parse_modifier(const fs_search_param *def, const char *mod, sq_param *p, const char **why)
{
    if (!mod) {
        p->modifier = SQ_MOD_NONE;
        return true;
    }
    if (!strcmp(mod, "missing")) {
        p->modifier = SQ_MOD_MISSING;
        return true;
    }
    if (def->kind == FS_SEARCH_STRING && !strcmp(mod, "exact"))
        p->modifier = SQ_MOD_EXACT;
    else if (def->kind == FS_SEARCH_STRING && !strcmp(mod, "contains"))
        p->modifier = SQ_MOD_CONTAINS;
    else if (def->kind == FS_SEARCH_TOKEN && !strcmp(mod, "not"))
        p->modifier = SQ_MOD_NOT;
    else if (def->kind == FS_SEARCH_REFERENCE && isupper((unsigned char)mod[0]) &&
             strlen(mod) < sizeof p->target_type) {
        p->modifier = SQ_MOD_TYPE;
        strcpy(p->target_type, mod);
    } else {
        *why = "this modifier is not supported for this parameter";
        return false;
    }
    return true;
}

static void note_ignored(sq_query *q, const char *name)
{
    size_t old = q->ignored ? strlen(q->ignored) : 0;
    char *grown = realloc(q->ignored, old + strlen(name) + 3);
    if (!grown)
        return;
    q->ignored = grown;
    sprintf(q->ignored + old, "%s%s", old ? ", " : "", name);
}

/* The parameter's name is the issue's expression, whole (the message names it whole too). */
static void issue(oo_list *issues, const char *code, const char *name, const char *fmt, const char *detail)
{
    oo_add(issues, OO_ERROR, code, name, 0, 0, fmt, name, detail);
}

/* "a.<ms>.<n>" or "b.<ms>.<n>", as the server's own paging links write it. */
static bool parse_cursor(const char *value, sq_query *q)
{
    if ((value[0] != 'a' && value[0] != 'b') || value[1] != '.')
        return false;
    char *end, *rest;
    long long ms = strtoll(value + 2, &end, 10);
    if (end == value + 2 || *end != '.')
        return false;
    long long rid = strtoll(end + 1, &rest, 10);
    if (rest == end + 1 || *rest || rid <= 0)
        return false;
    q->has_cursor = true;
    q->cursor_before = value[0] == 'b';
    q->cursor_ms = ms;
    q->cursor_rid = rid;
    return true;
}

static const char *resource_type_name(const fs_schema *s, const char *name)
{
    const fs_type *t = fs_type_by_name(s, name, strlen(name));
    return t && t->kind == FS_RESOURCE && !t->is_abstract ? t->name : NULL;
}

/* _include / _revinclude[:iterate]=Type:param[:Target], or _include=*: true when `name` is one. */
static bool include_param(const fs_schema *s, sq_query *q, const char *name, const char *value, bool *ok,
                          oo_list *issues)
{
    bool reverse = !strncmp(name, "_revinclude", 11);
    if (!reverse && strncmp(name, "_include", 8))
        return false;
    const char *mod = name + (reverse ? 11 : 8);
    if (*mod && strcmp(mod, ":iterate") && strcmp(mod, ":recurse"))
        return false; /* not ours: reported as unknown */
    if (q->include_count == SQ_MAX_INCLUDES) {
        issue(issues, "too-costly", name, "%s: too many includes%s", "");
        *ok = false;
        return true;
    }
    sq_include inc = {.reverse = reverse, .iterate = *mod != '\0'};
    if (strcmp(value, "*") || reverse) {
        char type[65] = "", param[65] = "", target[65] = "";
        int parts = sscanf(value, "%64[^:]:%64[^:]:%64s", type, param, target);
        inc.source_type = parts >= 2 ? resource_type_name(s, type) : NULL;
        inc.ref = inc.source_type ? fs_search_param_find(s, inc.source_type, param) : NULL;
        inc.target_type = parts == 3 ? resource_type_name(s, target) : NULL;
        if (!inc.ref || inc.ref->kind != FS_SEARCH_REFERENCE || (parts == 3 && !inc.target_type)) {
            issue(issues, "invalid", name, "%s: takes Type:parameter[:TargetType] with a reference parameter%s", "");
            *ok = false;
            return true;
        }
    }
    q->includes[q->include_count++] = inc;
    return true;
}

/* A result parameter (_count, _sort, ...): true when it was one. */
/* _summary and _elements as given: read into sq_query.subset once every parameter is in (fsub_parse takes both). */
typedef struct subset_values {
    char *summary, *elements;
} subset_values;

static bool result_param(const fs_schema *s, sq_query *q, const char *name, const char *value, const sq_limits *lim,
                         subset_values *subset, bool *ok, oo_list *issues)
{
    if (!strcmp(name, "_count")) {
        char *end;
        long n = strtol(value, &end, 10);
        if (*end || n < 0) {
            issue(issues, "invalid", name, "%s must be a non-negative number%s", "");
            *ok = false;
        }
        q->count = n > lim->max_count ? lim->max_count : (int)n;
    } else if (!strcmp(name, "_snapshot")) {
        char *end;
        long long n = strtoll(value, &end, 10);
        if (*end || n <= 0) {
            issue(issues, "invalid", name, "%s: not a page of this server%s", "");
            *ok = false;
        }
        q->snapshot = n;
    } else if (!strcmp(name, "_cursor")) {
        if (!parse_cursor(value, q)) {
            issue(issues, "invalid", name, "%s: not a page of this server%s", "");
            *ok = false;
        }
    } else if (!strcmp(name, "_getpagesoffset")) {
        long n = strtol(value, NULL, 10);
        q->offset = n < 0 ? 0 : n > 1000000 ? 1000000 : (int)n;
    } else if (!strcmp(name, "_sort")) {
        q->has_sort = true;
        q->sort_descending = value[0] == '-';
        const char *key = value + q->sort_descending;
        q->sort = strcmp(key, "_lastUpdated") ? fs_search_param_find(s, q->type->name, key) : NULL;
        if (strcmp(key, "_lastUpdated") && !q->sort) {
            issue(issues, "invalid", name, "%s: unknown sort parameter%s", "");
            *ok = false;
        }
    } else if (!strcmp(name, "_summary") || !strcmp(name, "_elements")) {
        char **slot = name[1] == 's' ? &subset->summary : &subset->elements;
        free(*slot);
        *slot = strdup(value);
        q->summary_count = subset->summary && !strcmp(subset->summary, "count");
    } else if (!strcmp(name, "_total") || !strcmp(name, "_format") || !strcmp(name, "_pretty")) {
        /* _total: the total is always counted; _format is content negotiation */
    } else {
        return false;
    }
    return true;
}

/* ---- chains ---- */

/*
 * The parameter `code` of `type`, or with type NULL (after a link without a
 * type) of any type that has one: then every such parameter must be of the
 * same kind, since the value is read by that kind.
 */
static const fs_search_param *find_param(const fs_schema *s, const char *type, const char *code, const char **why)
{
    if (type)
        return fs_search_param_find(s, type, code);
    const fs_search_param *found = NULL;
    for (uint32_t i = 0; i < s->search_param_count; i++) {
        const fs_search_param *p = &s->search_params[i];
        if (strcmp(p->code, code))
            continue;
        if (found && found->kind != p->kind) {
            *why = "means different things on the types the chain reaches; name the type (subject:Patient.name)";
            return NULL;
        }
        found = found ? found : p;
    }
    return found;
}

static bool add_link(sq_param *p, bool reverse, const fs_search_param *ref, const char *type, const char **why)
{
    if (!ref || ref->kind != FS_SEARCH_REFERENCE) {
        *why = "a chain follows reference parameters only";
        return false;
    }
    if (p->chain_len == SQ_MAX_CHAIN) {
        *why = "the chain is too long";
        return false;
    }
    p->chain[p->chain_len++] = (sq_link){reverse, ref, type};
    return true;
}

/* "_has:Type:ref:" at the start of *rest: a reverse link; advances *rest and *type past it. */
static bool reverse_link(const fs_schema *s, char **rest, const char **type, sq_param *p, const char **why)
{
    char *t = *rest + 5, *c1 = strchr(t, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2) {
        *why = "_has takes _has:Type:reference:parameter";
        return false;
    }
    *c1 = *c2 = '\0';
    const char *source = resource_type_name(s, t);
    if (!source) {
        *why = "_has names an unknown resource type";
        return false;
    }
    if (!add_link(p, true, fs_search_param_find(s, source, c1 + 1), source, why))
        return false;
    *type = source;
    *rest = c2 + 1;
    return true;
}

/* "ref[:Type]." at the start of *rest (dot at `dot`): a forward link. */
static bool forward_link(const fs_schema *s, char **rest, char *dot, const char **type, sq_param *p, const char **why)
{
    *dot = '\0';
    char *colon = strchr(*rest, ':');
    if (colon)
        *colon++ = '\0';
    const char *target = colon ? resource_type_name(s, colon) : NULL;
    if (colon && !target) {
        *why = "the chain names an unknown resource type";
        return false;
    }
    const fs_search_param *ref = find_param(s, *type, *rest, why);
    if (!ref && !*why && p->chain_len) /* unknown from the start: an unknown parameter like any other */
        *why = "the chain names an unknown reference parameter";
    if (!ref || !add_link(p, false, ref, target, why))
        return false;
    *type = target;
    *rest = dot + 1;
    return true;
}

/*
 * Splits a parameter name into its chain links (into p) and the final
 * parameter, whose definition is returned; *mod is its modifier (NULL when
 * none). `name` is modified (cut at the separators).
 */
static const fs_search_param *parse_chain(const fs_schema *s, const char *type, char *name, sq_param *p, char **mod,
                                          const char **why)
{
    char *rest = name;
    for (;;) {
        char *dot = strchr(rest, '.');
        bool ok = !strncmp(rest, "_has:", 5) ? reverse_link(s, &rest, &type, p, why)
                  : dot                      ? forward_link(s, &rest, dot, &type, p, why)
                                             : true;
        if (!ok)
            return NULL;
        if (!dot && strncmp(rest, "_has:", 5))
            break;
    }
    char *colon = strchr(rest, ':');
    if (colon)
        *colon++ = '\0';
    *mod = colon;
    const fs_search_param *def = find_param(s, type, rest, why);
    if (!def && !*why && p->chain_len)
        *why = "the chain ends in an unknown search parameter";
    return def;
}

static bool add_param(sq_query *q, const sq_param *chain, const fs_search_param *def, const char *mod,
                      const char *value, bool strict, bool (*supported)(fs_search_kind), const sq_limits *lim,
                      const char *name, oo_list *issues)
{
    if (supported && !supported(def->kind)) {
        if (strict) {
            issue(issues, "not-supported", name, "search parameter %s of this kind is not supported%s", "");
            return false;
        }
        note_ignored(q, name);
        return true;
    }
    if (q->param_count == lim->max_params) {
        issue(issues, "too-costly", name, "too many search parameters (at %s)%s", "");
        return false;
    }
    sq_param *p = &q->params[q->param_count];
    memset(p, 0, sizeof *p);
    if (chain)
        memcpy(p->chain, chain->chain, sizeof p->chain), p->chain_len = chain->chain_len;
    p->def = def;
    const char *why = NULL;
    if (!parse_modifier(def, mod, p, &why)) {
        issue(issues, "not-supported", name, "%s: %s", why);
        return false;
    }
    q->param_count++;
    size_t len = strlen(value), at = 0;
    p->values = calloc(lim->max_values, sizeof *p->values);
    while (at <= len) {
        size_t comma = at + find_unescaped(value + at, len - at, ',');
        if (p->value_count == lim->max_values) {
            issue(issues, "too-costly", name, "%s: too many values%s", "");
            return false;
        }
        if (!parse_value(def, p->modifier, value + at, comma - at, &p->values[p->value_count++], &why)) {
            issue(issues, "invalid", name, "%s: %s", why);
            return false;
        }
        at = comma + 1;
    }
    return true;
}

bool sq_parse(const fs_schema *s, const fs_type *type, const char *query, bool strict, const sq_limits *lim,
              bool (*supported)(fs_search_kind), sq_query *out, oo_list *issues)
{
    memset(out, 0, sizeof *out);
    out->type = type;
    out->count = lim->default_count;
    out->params = calloc(lim->max_params ? lim->max_params : 1, sizeof *out->params);
    bool ok = true;
    subset_values subset = {0};
    const char *p = query ? query : "";
    while (ok && *p) {
        size_t len = strcspn(p, "&");
        const char *eq = memchr(p, '=', len);
        char *name = sq_url_decode(p, eq ? (size_t)(eq - p) : len);
        char *value = eq ? sq_url_decode(eq + 1, len - (size_t)(eq + 1 - p)) : strdup("");
        p += len + (p[len] == '&');
        if (!name || !value) {
            oo_add(issues, OO_ERROR, "invalid", NULL, 0, 0, "malformed percent-encoding in the query");
            ok = false;
        } else if (*name && !include_param(s, out, name, value, &ok, issues) &&
                   !result_param(s, out, name, value, lim, &subset, &ok, issues)) {
            sq_param chain = {0};
            char *colon = NULL, *whole = strdup(name);
            const char *why = NULL;
            const fs_search_param *def = parse_chain(s, type->name, name, &chain, &colon, &why);
            if (why) { /* a chain that cannot mean anything is an error also when lenient */
                issue(issues, "invalid", whole ? whole : name, "%s: %s", why);
                ok = false;
            } else if (def) {
                ok = add_param(out, &chain, def, colon, value, strict, supported, lim, whole ? whole : name, issues);
            } else if (strict) {
                issue(issues, "not-supported", whole ? whole : name, "unknown search parameter %s%s", "");
                ok = false;
            } else {
                note_ignored(out, whole ? whole : name);
            }
            free(whole);
        }
        free(name);
        free(value);
    }
    char why[200];
    if (ok && !fsub_parse(subset.summary, subset.elements, &out->subset, why, sizeof why)) {
        oo_add(issues, OO_ERROR, "invalid", subset.summary ? "_summary" : "_elements", 0, 0, "%s", why);
        ok = false;
    }
    free(subset.summary);
    free(subset.elements);
    if (!ok)
        sq_free(out);
    return ok;
}

char *sq_query_param(const char *query, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = query; p && *p;) {
        size_t len = strcspn(p, "&");
        if (len > n && !strncmp(p, name, n) && p[n] == '=')
            return sq_url_decode(p + n + 1, len - n - 1);
        p += len + (p[len] == '&');
    }
    return NULL;
}

void sq_free(sq_query *q)
{
    for (size_t i = 0; i < q->param_count; i++) {
        for (size_t k = 0; k < q->params[i].value_count; k++)
            free_value(&q->params[i].values[k]);
        free(q->params[i].values);
    }
    free(q->params);
    free(q->ignored);
    memset(q, 0, sizeof *q);
}
