/*
 * mappings/fml_parse.c — FML text to a StructureMap (json-c), and back.
 *
 * A hand-written recursive-descent parser over a one-token lookahead lexer.
 * FHIRPath inside a map (where, check, log, evaluate, `= (expr)`) is not
 * parsed here: the text between balanced parentheses is kept as written and
 * compiled by mappings/structuremap.c, which knows the variables in scope.
 *
 * Memory: the parser builds one json-c tree; on error it is released and
 * NULL returned. Token texts point into the caller's buffer; every string
 * that goes into the tree is copied by json-c.
 */
#include "mappings/fml_parse.h"

#include "fhir/array.h"
#include "fhir/json_write.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum tkind { T_EOF, T_IDENT, T_STRING, T_NUMBER, T_PUNCT } tkind;

typedef struct tok {
    tkind kind;
    const char *s; /* the token's bytes in the source (strings: with their quotes) */
    size_t len;
} tok;

typedef struct comment {
    size_t start, end; /* the comment's text, markers excluded */
    size_t at;         /* offset of the comment marker */
} comment;

typedef struct parser {
    const char *text;
    size_t len, pos;
    tok cur;
    size_t last_end; /* where the last token taken ends (before the lookahead) */
    size_t *lines;   /* offsets of line starts */
    size_t line_count, line_cap;
    comment *comments;
    size_t comment_count, comment_cap;
    fml_error *err;
    const char *file;
    bool failed;
    unsigned rule_counter;
} parser;

/* ---- positions and errors ------------------------------------------------ */

static void line_col(const parser *p, size_t offset, unsigned *line, unsigned *col)
{
    size_t lo = 0, hi = p->line_count;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (p->lines[mid] <= offset)
            lo = mid;
        else
            hi = mid;
    }
    *line = (unsigned)lo + 1;
    *col = (unsigned)(offset - p->lines[lo]) + 1;
}

static bool fail_at(parser *p, size_t offset, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail_at(parser *p, size_t offset, const char *fmt, ...)
{
    if (p->failed)
        return false;
    p->failed = true;
    if (p->err) {
        snprintf(p->err->file, sizeof p->err->file, "%s", p->file ? p->file : "<map>");
        line_col(p, offset, &p->err->line, &p->err->column);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err->message, sizeof p->err->message, fmt, ap);
        va_end(ap);
    }
    return false;
}

static size_t tok_offset(const parser *p)
{
    return (size_t)(p->cur.s - p->text);
}

/* "expected X, found 'tok'" at the current token. */
static bool expected(parser *p, const char *what)
{
    if (p->cur.kind == T_EOF)
        return fail_at(p, tok_offset(p), "expected %s, found the end of the map", what);
    int n = p->cur.len > 40 ? 40 : (int)p->cur.len;
    return fail_at(p, tok_offset(p), "expected %s, found '%.*s'", what, n, p->cur.s);
}

size_t fml_error_format(const fml_error *err, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s:%u:%u: %s", err->file, err->line, err->column, err->message);
    return n < 0 ? 0 : (size_t)n;
}

/* ---- lexer --------------------------------------------------------------- */

static bool add_comment(parser *p, size_t at, size_t start, size_t end)
{
    if (!fa_reserve(&p->comments, &p->comment_cap, p->comment_count + 1, sizeof *p->comments))
        return fail_at(p, at, "out of memory");
    p->comments[p->comment_count++] = (comment){.start = start, .end = end, .at = at};
    return true;
}

static bool skip_space(parser *p)
{
    for (;;) {
        while (p->pos < p->len && isspace((unsigned char)p->text[p->pos]))
            p->pos++;
        if (p->pos + 1 < p->len && p->text[p->pos] == '/' && p->text[p->pos + 1] == '/') {
            size_t at = p->pos, start = p->pos + 2;
            while (start < p->len && p->text[start] == '/')
                start++;
            size_t end = start;
            while (end < p->len && p->text[end] != '\n')
                end++;
            p->pos = end;
            if (!add_comment(p, at, start, end))
                return false;
        } else if (p->pos + 1 < p->len && p->text[p->pos] == '/' && p->text[p->pos + 1] == '*') {
            size_t at = p->pos, end = p->pos + 2;
            while (end + 1 < p->len && !(p->text[end] == '*' && p->text[end + 1] == '/'))
                end++;
            if (end + 1 >= p->len)
                return fail_at(p, at, "unterminated comment: expected '*/'");
            p->pos = end + 2;
            if (!add_comment(p, at, at + 2, end))
                return false;
        } else {
            return true;
        }
    }
}

static const char *const PUNCT2[] = {"->", "..", "==", "!=", "<=", ">=", "<-", ">-", "--", "<<", ">>"};

static bool lex(parser *p)
{
    if (p->cur.s)
        p->last_end = (size_t)(p->cur.s - p->text) + p->cur.len;
    if (!skip_space(p))
        return false;
    const char *s = p->text + p->pos;
    size_t left = p->len - p->pos;
    p->cur = (tok){.kind = T_EOF, .s = s, .len = 0};
    if (!left)
        return true;
    size_t n = 0;
    if (isalpha((unsigned char)s[0]) || s[0] == '_') {
        while (n < left && (isalnum((unsigned char)s[n]) || s[n] == '_'))
            n++;
        p->cur.kind = T_IDENT;
    } else if (s[0] == '`') {
        n = 1;
        while (n < left && s[n] != '`' && s[n] != '\n')
            n++;
        if (n >= left || s[n] != '`')
            return fail_at(p, p->pos, "unterminated `identifier`: expected '`'");
        n++;
        p->cur.kind = T_IDENT;
    } else if (isdigit((unsigned char)s[0])) {
        while (n < left && isdigit((unsigned char)s[n]))
            n++;
        if (n + 1 < left && s[n] == '.' && isdigit((unsigned char)s[n + 1])) {
            n++;
            while (n < left && isdigit((unsigned char)s[n]))
                n++;
        }
        p->cur.kind = T_NUMBER;
    } else if (s[0] == '"' || s[0] == '\'') {
        n = 1;
        while (n < left && s[n] != s[0] && s[n] != '\n')
            n += (s[n] == '\\' && n + 1 < left) ? 2 : 1;
        if (n >= left || s[n] != s[0])
            return fail_at(p, p->pos, "unterminated string: expected a closing %c", s[0]);
        n++;
        p->cur.kind = T_STRING;
    } else {
        p->cur.kind = T_PUNCT;
        n = 1;
        for (size_t i = 0; i < sizeof PUNCT2 / sizeof *PUNCT2; i++)
            if (left >= 2 && !memcmp(s, PUNCT2[i], 2))
                n = 2;
        if (!strchr("(){},;:.=-~+*<>|!", s[0]))
            return fail_at(p, p->pos, "unexpected character '%c'", s[0]);
    }
    p->cur.len = n;
    p->pos += n;
    return true;
}

static bool is(const parser *p, const char *text)
{
    return (p->cur.kind == T_PUNCT || p->cur.kind == T_IDENT) && p->cur.len == strlen(text) &&
           !memcmp(p->cur.s, text, p->cur.len);
}

static bool accept(parser *p, const char *text)
{
    return is(p, text) && lex(p);
}

static bool expect(parser *p, const char *text, const char *context)
{
    if (is(p, text))
        return lex(p);
    char what[120];
    snprintf(what, sizeof what, "'%s' %s", text, context);
    return expected(p, what);
}

/* ---- values -------------------------------------------------------------- */

/* The decoded text of a string token (malloc'd) or an identifier (backticks removed). */
static char *tok_text(parser *p)
{
    const tok *t = &p->cur;
    const char *s = t->s;
    size_t n = t->len;
    if ((t->kind == T_STRING || (t->kind == T_IDENT && s[0] == '`')) && n >= 2)
        s++, n -= 2;
    char *out = malloc(n + 1);
    if (!out) {
        fail_at(p, tok_offset(p), "out of memory");
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (t->kind == T_STRING && s[i] == '\\' && i + 1 < n) {
            char c = s[++i];
            out[o++] = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = 0;
    return out;
}

/* Take an identifier (what names it in the error) into *out (malloc'd). */
static bool take_ident(parser *p, const char *what, char **out)
{
    if (p->cur.kind != T_IDENT)
        return expected(p, what);
    *out = tok_text(p);
    return *out && lex(p);
}

static bool take_string(parser *p, const char *what, char **out)
{
    if (p->cur.kind != T_STRING)
        return expected(p, what);
    *out = tok_text(p);
    return *out && lex(p);
}

static void set_str(json_object *o, const char *key, const char *value)
{
    json_object_object_add(o, key, json_object_new_string(value));
}

static json_object *push_new(json_object *o, const char *key)
{
    json_object *arr = json_object_object_get(o, key);
    if (!arr) {
        arr = json_object_new_array();
        json_object_object_add(o, key, arr);
    }
    json_object *item = json_object_new_object();
    json_object_array_add(arr, item);
    return item;
}

/* A literal (string, number, true/false) as value[x] of o with the given prefix ("value", "defaultValue"). */
static bool take_literal(parser *p, json_object *o, const char *prefix)
{
    char key[48];
    if (p->cur.kind == T_STRING) {
        char *s = tok_text(p);
        if (!s)
            return false;
        snprintf(key, sizeof key, "%sString", prefix);
        set_str(o, key, s);
        free(s);
    } else if (p->cur.kind == T_NUMBER) {
        char num[64];
        snprintf(num, sizeof num, "%.*s", (int)(p->cur.len < 63 ? p->cur.len : 63), p->cur.s);
        if (memchr(p->cur.s, '.', p->cur.len)) {
            snprintf(key, sizeof key, "%sDecimal", prefix);
            json_object_object_add(o, key, json_object_new_double_s(strtod(num, NULL), num));
        } else {
            snprintf(key, sizeof key, "%sInteger", prefix);
            json_object_object_add(o, key, json_object_new_int64(strtoll(num, NULL, 10)));
        }
    } else if (is(p, "true") || is(p, "false")) {
        snprintf(key, sizeof key, "%sBoolean", prefix);
        json_object_object_add(o, key, json_object_new_boolean(is(p, "true")));
    } else {
        return expected(p, "a literal (string, number, true or false)");
    }
    return lex(p);
}

static bool is_literal(const parser *p)
{
    return p->cur.kind == T_STRING || p->cur.kind == T_NUMBER || is(p, "true") || is(p, "false");
}

/*
 * The raw text from `start` up to (not including) the ')' that closes the
 * enclosing parenthesis, skipping nested parentheses and quoted text. The
 * lexer is left on that ')'. Returns a malloc'd, trimmed copy.
 */
static char *raw_until_close(parser *p, size_t start)
{
    int depth = 0;
    size_t i = start;
    for (; i < p->len; i++) {
        char c = p->text[i];
        if (c == '\'' || c == '"' || c == '`') {
            for (i++; i < p->len && p->text[i] != c; i++)
                if (p->text[i] == '\\')
                    i++;
        } else if (c == '(') {
            depth++;
        } else if (c == ')') {
            if (depth-- == 0)
                break;
        }
    }
    if (i >= p->len) {
        fail_at(p, start, "unbalanced FHIRPath expression: expected ')'");
        return NULL;
    }
    size_t a = start, b = i;
    while (a < b && isspace((unsigned char)p->text[a]))
        a++;
    while (b > a && isspace((unsigned char)p->text[b - 1]))
        b--;
    if (a == b) {
        fail_at(p, start, "expected a FHIRPath expression");
        return NULL;
    }
    char *out = strndup(p->text + a, b - a);
    p->pos = i;
    if (!out || !lex(p)) {
        free(out);
        if (!p->failed)
            fail_at(p, start, "out of memory");
        return NULL;
    }
    return out;
}

/* `( fhirpath )` after a keyword: the expression's text into o[key]. */
static bool take_paren_expr(parser *p, json_object *o, const char *key, const char *after)
{
    if (!is(p, "(")) {
        char what[80];
        snprintf(what, sizeof what, "'(' and a FHIRPath expression after '%s'", after);
        return expected(p, what);
    }
    char *e = raw_until_close(p, p->pos);
    if (!e)
        return false;
    set_str(o, key, e);
    free(e);
    return expect(p, ")", "closing the expression");
}

/* ---- header: map, uses, imports ------------------------------------------ */

static bool parse_map_decl(parser *p, json_object *sm)
{
    char *url = NULL, *name = NULL;
    bool ok = lex(p) && take_string(p, "the map's url (a string)", &url) && expect(p, "=", "after the map's url") &&
              take_string(p, "the map's name (a string)", &name);
    if (ok) {
        set_str(sm, "url", url);
        set_str(sm, "name", name);
    }
    free(url);
    free(name);
    return ok;
}

static bool parse_uses(parser *p, json_object *sm)
{
    char *url = NULL, *alias = NULL, *mode = NULL;
    bool ok = lex(p) && take_string(p, "the structure's url (a string) after 'uses'", &url);
    if (ok && is(p, "alias"))
        ok = lex(p) && take_ident(p, "an alias name", &alias);
    ok = ok && expect(p, "as", "and a mode (source, target, queried, produced)");
    if (ok && !(is(p, "source") || is(p, "target") || is(p, "queried") || is(p, "produced")))
        ok = expected(p, "source, target, queried or produced");
    ok = ok && take_ident(p, "a mode", &mode);
    if (ok) {
        json_object *st = push_new(sm, "structure");
        set_str(st, "url", url);
        set_str(st, "mode", mode);
        if (alias)
            set_str(st, "alias", alias);
    }
    free(url);
    free(alias);
    free(mode);
    return ok;
}

static bool parse_imports(parser *p, json_object *sm)
{
    char *url = NULL;
    bool ok = lex(p) && take_string(p, "the imported map's url (a string)", &url);
    if (ok) {
        json_object *arr = json_object_object_get(sm, "import");
        if (!arr) {
            arr = json_object_new_array();
            json_object_object_add(sm, "import", arr);
        }
        json_object_array_add(arr, json_object_new_string(url));
    }
    free(url);
    return ok;
}

/* ---- conceptmap ---------------------------------------------------------- */

static const struct {
    const char *token, *code;
} EQUIVALENCES[] = {{"-", "relatedto"},    {"==", "equivalent"}, {"=", "equal"},     {"!=", "disjoint"},
                    {"--", "unmatched"},   {"<=", "wider"},      {"<-", "subsumes"}, {">=", "narrower"},
                    {">-", "specializes"}, {"~", "inexact"}};

typedef struct cm_prefix {
    char *name, *url;
} cm_prefix;

static const char *prefix_url(const cm_prefix *pre, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(pre[i].name, name))
            return pre[i].url;
    return NULL;
}

/* `s:code`: the prefix's url and the code (malloc'd). Codes may hold '-', '.' and digits, or be quoted. */
static bool take_prefixed_code(parser *p, const cm_prefix *pre, size_t n, const char **url, char **code)
{
    size_t at = tok_offset(p);
    char *name = NULL;
    if (!take_ident(p, "a prefix name (as in s:code)", &name))
        return false;
    *url = prefix_url(pre, n, name);
    free(name);
    if (!*url)
        return fail_at(p, at, "unknown prefix: expected one declared with 'prefix name = \"url\"'");
    if (!expect(p, ":", "between the prefix and the code"))
        return false;
    if (p->cur.kind == T_STRING) {
        *code = tok_text(p);
        return *code && lex(p);
    }
    if (p->cur.kind != T_IDENT && p->cur.kind != T_NUMBER)
        return expected(p, "a code after the prefix");
    size_t start = tok_offset(p), end = start;
    while (end < p->len && (isalnum((unsigned char)p->text[end]) || strchr("_-.", p->text[end])))
        end++;
    *code = strndup(p->text + start, end - start);
    p->pos = end;
    return *code && lex(p);
}

static json_object *cm_group(json_object *cm, const char *source, const char *target)
{
    json_object *groups = json_object_object_get(cm, "group");
    for (size_t i = 0; groups && i < json_object_array_length(groups); i++) {
        json_object *g = json_object_array_get_idx(groups, i);
        if (!strcmp(json_object_get_string(json_object_object_get(g, "source")), source) &&
            !strcmp(json_object_get_string(json_object_object_get(g, "target")), target))
            return g;
    }
    json_object *g = push_new(cm, "group");
    set_str(g, "source", source);
    set_str(g, "target", target);
    return g;
}

static bool parse_cm_line(parser *p, json_object *cm, const cm_prefix *pre, size_t n)
{
    const char *su, *tu;
    char *sc = NULL, *tc = NULL;
    const char *eq = NULL;
    bool ok = take_prefixed_code(p, pre, n, &su, &sc);
    if (ok) {
        for (size_t i = 0; i < sizeof EQUIVALENCES / sizeof *EQUIVALENCES; i++)
            if (is(p, EQUIVALENCES[i].token))
                eq = EQUIVALENCES[i].code;
        ok = eq ? lex(p) : expected(p, "a relationship (- == = != -- <= <- >= >- ~)");
    }
    ok = ok && take_prefixed_code(p, pre, n, &tu, &tc);
    if (ok) {
        json_object *g = cm_group(cm, su, tu);
        json_object *el = push_new(g, "element");
        set_str(el, "code", sc);
        json_object *t = push_new(el, "target");
        set_str(t, "code", tc);
        set_str(t, "equivalence", eq);
    }
    free(sc);
    free(tc);
    return ok;
}

static bool parse_conceptmap(parser *p, json_object *sm)
{
    char *name = NULL;
    cm_prefix pre[16];
    size_t n = 0;
    bool ok = lex(p) && take_string(p, "the concept map's name (a string)", &name) &&
              expect(p, "{", "opening the concept map");
    json_object *cm = NULL;
    if (ok) {
        cm = push_new(sm, "contained");
        set_str(cm, "resourceType", "ConceptMap");
        set_str(cm, "id", name);
        set_str(cm, "status", "draft");
    }
    while (ok && !is(p, "}")) {
        if (is(p, "prefix")) {
            if (n == sizeof pre / sizeof *pre) {
                ok = fail_at(p, tok_offset(p), "too many prefixes (at most 16)");
                break;
            }
            ok = lex(p) && take_ident(p, "a prefix name", &pre[n].name);
            if (ok && !(ok = expect(p, "=", "after the prefix name") &&
                             take_string(p, "the code system url (a string)", &pre[n].url)))
                free(pre[n].name);
            n += ok;
        } else if (p->cur.kind == T_EOF) {
            ok = expected(p, "'}' closing the concept map");
        } else {
            ok = parse_cm_line(p, cm, pre, n);
        }
    }
    ok = ok && expect(p, "}", "closing the concept map");
    for (size_t i = 0; i < n; i++) {
        free(pre[i].name);
        free(pre[i].url);
    }
    free(name);
    return ok;
}

/* ---- rules --------------------------------------------------------------- */

static bool parse_rules(parser *p, json_object *owner);

static bool is_source_list_mode(const parser *p)
{
    return is(p, "first") || is(p, "not_first") || is(p, "last") || is(p, "not_last") || is(p, "only_one");
}

/* `context[.element]` into o's context and element. */
static bool parse_context(parser *p, json_object *o, const char *what)
{
    char *ctx = NULL, *el = NULL;
    bool ok = take_ident(p, what, &ctx);
    if (ok && is(p, "."))
        ok = lex(p) && take_ident(p, "an element name after '.'", &el);
    if (ok) {
        set_str(o, "context", ctx);
        if (el)
            set_str(o, "element", el);
    }
    free(ctx);
    free(el);
    return ok;
}

static bool parse_cardinality(parser *p, json_object *src)
{
    json_object_object_add(src, "min", json_object_new_int(atoi(p->cur.s)));
    if (!lex(p) || !expect(p, "..", "in the cardinality min..max"))
        return false;
    if (is(p, "*")) {
        set_str(src, "max", "*");
        return lex(p);
    }
    if (p->cur.kind != T_NUMBER)
        return expected(p, "a maximum (a number or '*')");
    char max[24];
    snprintf(max, sizeof max, "%.*s", (int)(p->cur.len < 23 ? p->cur.len : 23), p->cur.s);
    set_str(src, "max", max);
    return lex(p);
}

static bool parse_source(parser *p, json_object *rule)
{
    json_object *src = push_new(rule, "source");
    if (!parse_context(p, src, "a source (variable or variable.element)"))
        return false;
    if (is(p, ":")) {
        char *type = NULL;
        if (!lex(p) || !take_ident(p, "a type name after ':'", &type))
            return false;
        set_str(src, "type", type);
        free(type);
        if (p->cur.kind == T_NUMBER && !parse_cardinality(p, src))
            return false;
    }
    for (;;) {
        if (is(p, "default")) {
            if (!lex(p))
                return false;
            bool paren = accept(p, "(");
            if (p->failed || !take_literal(p, src, "defaultValue") ||
                (paren && !expect(p, ")", "after the default value")))
                return false;
        } else if (is_source_list_mode(p)) {
            char mode[16];
            snprintf(mode, sizeof mode, "%.*s", (int)p->cur.len, p->cur.s);
            set_str(src, "listMode", mode);
            if (!lex(p))
                return false;
        } else if (is(p, "as")) {
            char *var = NULL;
            if (!lex(p) || !take_ident(p, "a variable name after 'as'", &var))
                return false;
            set_str(src, "variable", var);
            free(var);
        } else if (is(p, "where")) {
            if (!lex(p) || !take_paren_expr(p, src, "condition", "where"))
                return false;
        } else if (is(p, "check")) {
            if (!lex(p) || !take_paren_expr(p, src, "check", "check"))
                return false;
        } else if (is(p, "log")) {
            if (!lex(p) || !take_paren_expr(p, src, "logMessage", "log"))
                return false;
        } else {
            return true;
        }
    }
}

static const char *const TRANSFORMS[] = {"create",    "copy",      "truncate", "escape", "cast",    "append",
                                         "translate", "reference", "dateOp",   "uuid",   "pointer", "evaluate",
                                         "cc",        "c",         "qty",      "id",     "cp"};

static bool known_transform(const char *name)
{
    for (size_t i = 0; i < sizeof TRANSFORMS / sizeof *TRANSFORMS; i++)
        if (!strcmp(TRANSFORMS[i], name))
            return true;
    return false;
}

/* A parameter: a literal or a variable (optionally var.path: read as FHIRPath on the variable). */
static bool parse_param(parser *p, json_object *tgt)
{
    json_object *param = push_new(tgt, "parameter");
    if (is_literal(p))
        return take_literal(p, param, "value");
    if (p->cur.kind != T_IDENT)
        return expected(p, "a parameter (a literal or a variable)");
    size_t start = tok_offset(p), end = start + p->cur.len;
    if (!lex(p))
        return false;
    while (is(p, ".")) {
        if (!lex(p) || p->cur.kind != T_IDENT)
            return expected(p, "an element name after '.'");
        end = tok_offset(p) + p->cur.len;
        if (!lex(p))
            return false;
    }
    char *id = strndup(p->text + start, end - start);
    if (!id)
        return fail_at(p, start, "out of memory");
    set_str(param, "valueId", id);
    free(id);
    return true;
}

/* `name(params)` with the lexer on '(' and name taken. */
static bool parse_invocation(parser *p, json_object *tgt, const char *name, size_t name_at)
{
    if (!known_transform(name))
        return fail_at(p, name_at,
                       "unknown transform '%s': expected create, copy, truncate, escape, cast, append, translate, "
                       "reference, dateOp, uuid, pointer, evaluate, cc, c, qty, id or cp",
                       name);
    set_str(tgt, "transform", name);
    if (!expect(p, "(", "after the transform name"))
        return false;
    bool evaluate = !strcmp(name, "evaluate");
    unsigned n = 0;
    while (!is(p, ")")) {
        if (n && !expect(p, ",", "between parameters"))
            return false;
        if (evaluate && n == 1) {
            char *e = raw_until_close(p, tok_offset(p));
            if (!e)
                return false;
            json_object *param = push_new(tgt, "parameter");
            set_str(param, "valueString", e);
            free(e);
        } else if (!parse_param(p, tgt)) {
            return false;
        }
        n++;
    }
    return lex(p);
}

static bool parse_transform(parser *p, json_object *tgt)
{
    if (is_literal(p)) {
        set_str(tgt, "transform", "copy");
        return take_literal(p, push_new(tgt, "parameter"), "value");
    }
    if (is(p, "(")) {
        char *e = raw_until_close(p, p->pos);
        if (!e)
            return false;
        set_str(tgt, "transform", "evaluate");
        set_str(push_new(tgt, "parameter"), "valueString", e);
        free(e);
        return expect(p, ")", "closing the expression");
    }
    if (p->cur.kind != T_IDENT)
        return expected(p, "a transform, a literal, a variable or '(' FHIRPath ')'");
    size_t at = tok_offset(p);
    if (p->pos < p->len && p->text[p->pos] == '(') {
        char *name = NULL;
        bool ok = take_ident(p, "a transform", &name) && parse_invocation(p, tgt, name, at);
        free(name);
        return ok;
    }
    set_str(tgt, "transform", "copy");
    return parse_param(p, tgt);
}

static bool parse_target(parser *p, json_object *rule)
{
    json_object *tgt = push_new(rule, "target");
    if (p->cur.kind != T_IDENT)
        return expected(p, "a target (variable.element or a transform)");
    size_t at = tok_offset(p);
    bool call = p->pos < p->len && p->text[p->pos] == '(';
    if (call) {
        char *name = NULL;
        bool ok = take_ident(p, "a transform", &name) && parse_invocation(p, tgt, name, at);
        free(name);
        if (!ok)
            return false;
    } else {
        if (!parse_context(p, tgt, "a target variable"))
            return false;
        set_str(tgt, "contextType", "variable");
        if (is(p, "=") && (!lex(p) || !parse_transform(p, tgt)))
            return false;
    }
    for (;;) {
        if (is(p, "as")) {
            char *var = NULL;
            if (!lex(p) || !take_ident(p, "a variable name after 'as'", &var))
                return false;
            set_str(tgt, "variable", var);
            free(var);
        } else if (is(p, "first") || is(p, "last") || is(p, "share") || is(p, "collate")) {
            json_object *modes = json_object_object_get(tgt, "listMode");
            if (!modes) {
                modes = json_object_new_array();
                json_object_object_add(tgt, "listMode", modes);
            }
            char mode[16];
            snprintf(mode, sizeof mode, "%.*s", (int)p->cur.len, p->cur.s);
            json_object_array_add(modes, json_object_new_string(mode));
            if (!lex(p))
                return false;
        } else {
            return true;
        }
    }
}

/* `then` group(a, b), ... or `then { rules }`. */
static bool parse_dependent(parser *p, json_object *rule)
{
    if (is(p, "{"))
        return lex(p) && parse_rules(p, rule) && expect(p, "}", "closing the dependent rules");
    do {
        json_object *dep = push_new(rule, "dependent");
        char *name = NULL;
        if (!take_ident(p, "a group name or '{' after 'then'", &name))
            return false;
        set_str(dep, "name", name);
        free(name);
        if (!expect(p, "(", "after the group name"))
            return false;
        json_object *vars = json_object_new_array();
        json_object_object_add(dep, "variable", vars);
        while (!is(p, ")")) {
            char *v = NULL;
            if ((json_object_array_length(vars) && !expect(p, ",", "between arguments")) ||
                !take_ident(p, "a variable as argument", &v))
                return false;
            json_object_array_add(vars, json_object_new_string(v));
            free(v);
        }
        if (!lex(p))
            return false;
    } while (accept(p, ","));
    return !p->failed;
}

/* A `//` comment that starts after offset `after` on the same line: that rule's documentation. */
static void trailing_doc(parser *p, json_object *o, size_t after)
{
    unsigned line, col, cline, ccol;
    line_col(p, after, &line, &col);
    for (size_t i = 0; i < p->comment_count; i++) {
        line_col(p, p->comments[i].at, &cline, &ccol);
        if (p->comments[i].at > after && cline == line) {
            const char *s = p->text + p->comments[i].start;
            size_t n = p->comments[i].end - p->comments[i].start;
            while (n && isspace((unsigned char)*s))
                s++, n--;
            while (n && isspace((unsigned char)s[n - 1]))
                n--;
            char *doc = strndup(s, n);
            if (doc && n)
                set_str(o, "documentation", doc);
            free(doc);
            return;
        }
    }
}

static void default_rule_name(parser *p, json_object *rule)
{
    json_object *src = json_object_array_get_idx(json_object_object_get(rule, "source"), 0);
    const char *el = json_object_get_string(json_object_object_get(src, "element"));
    char name[96];
    if (el)
        snprintf(name, sizeof name, "%s", el);
    else
        snprintf(name, sizeof name, "rule%u", ++p->rule_counter);
    set_str(rule, "name", name);
}

static bool parse_rule(parser *p, json_object *owner)
{
    json_object *rule = push_new(owner, "rule");
    do {
        if (!parse_source(p, rule))
            return false;
    } while (accept(p, ","));
    if (p->failed)
        return false;
    if (accept(p, "->")) {
        do {
            if (!parse_target(p, rule))
                return false;
        } while (accept(p, ","));
    }
    bool block = false;
    if (!p->failed && accept(p, "then")) {
        block = is(p, "{");
        if (!parse_dependent(p, rule))
            return false;
    }
    if (p->failed)
        return false;
    if (p->cur.kind == T_STRING) {
        char *name = tok_text(p);
        if (!name)
            return false;
        set_str(rule, "name", name);
        free(name);
        if (!lex(p))
            return false;
        block = false;
    } else {
        default_rule_name(p, rule);
    }
    size_t end = tok_offset(p);
    if (is(p, ";")) {
        if (!lex(p))
            return false;
    } else if (!block) {
        return expected(p, "';' ending the rule (or '->', ',', 'then', a rule name)");
    }
    trailing_doc(p, rule, end);
    return true;
}

static bool parse_rules(parser *p, json_object *owner)
{
    while (!is(p, "}") && !p->failed) {
        if (p->cur.kind == T_EOF)
            return expected(p, "'}'");
        if (!parse_rule(p, owner))
            return false;
    }
    return !p->failed;
}

/* ---- groups -------------------------------------------------------------- */

static bool parse_input(parser *p, json_object *group)
{
    json_object *in = push_new(group, "input");
    if (!is(p, "source") && !is(p, "target"))
        return expected(p, "'source' or 'target' before a group input");
    set_str(in, "mode", is(p, "source") ? "source" : "target");
    char *name = NULL, *type = NULL;
    bool ok = lex(p) && take_ident(p, "the input's name", &name);
    if (ok && accept(p, ":"))
        ok = take_ident(p, "the input's type after ':'", &type);
    if (ok && !p->failed) {
        set_str(in, "name", name);
        if (type)
            set_str(in, "type", type);
    }
    free(name);
    free(type);
    return ok && !p->failed;
}

/* The comments on the lines right above offset `at` (no blank line between): documentation. */
static char *leading_doc(parser *p, size_t at, size_t not_before)
{
    unsigned want, col;
    line_col(p, at, &want, &col);
    fj_buf b = {0};
    size_t first = p->comment_count;
    for (size_t i = p->comment_count; i-- > 0;) {
        unsigned line, c;
        line_col(p, p->comments[i].at, &line, &c);
        if (p->comments[i].at < not_before || line + 1 != want)
            break;
        first = i;
        want = line;
    }
    for (size_t i = first; i < p->comment_count && p->comments[i].at < at; i++) {
        const char *s = p->text + p->comments[i].start;
        size_t n = p->comments[i].end - p->comments[i].start;
        while (n && isspace((unsigned char)*s))
            s++, n--;
        while (n && isspace((unsigned char)s[n - 1]))
            n--;
        if (b.len)
            fj_buf_append(&b, "\n", 1);
        fj_buf_append(&b, s, n);
    }
    return b.len ? fj_buf_take(&b, NULL) : (fj_buf_free(&b), NULL);
}

static bool parse_group(parser *p, json_object *sm, size_t prev_end)
{
    size_t at = tok_offset(p);
    json_object *g = push_new(sm, "group");
    char *name = NULL, *doc = leading_doc(p, at, prev_end);
    bool ok = lex(p) && take_ident(p, "the group's name", &name) && expect(p, "(", "opening the group's inputs");
    if (ok) {
        set_str(g, "name", name);
        set_str(g, "typeMode", "none");
        if (doc)
            set_str(g, "documentation", doc);
    }
    free(name);
    free(doc);
    while (ok && !is(p, ")")) {
        if (json_object_object_get(g, "input") && !expect(p, ",", "between group inputs"))
            return false;
        ok = parse_input(p, g);
    }
    ok = ok && lex(p);
    if (ok && accept(p, "extends")) {
        char *base = NULL;
        ok = take_ident(p, "the name of the group extended", &base);
        if (ok)
            set_str(g, "extends", base);
        free(base);
    }
    if (ok && !p->failed && accept(p, "<<")) {
        if (is(p, "types")) {
            set_str(g, "typeMode", "types");
            ok = lex(p);
        } else if (is(p, "type")) {
            set_str(g, "typeMode", "type-and-types");
            ok = lex(p) && expect(p, "+", "in <<type+>>");
        } else {
            ok = expected(p, "'types' or 'type+' in << >>");
        }
        ok = ok && expect(p, ">>", "closing the type mode");
    }
    return ok && !p->failed && expect(p, "{", "opening the group's rules") && parse_rules(p, g) &&
           expect(p, "}", "closing the group");
}

/* ---- the file ------------------------------------------------------------ */

static bool index_lines(parser *p)
{
    if (!fa_reserve(&p->lines, &p->line_cap, 1, sizeof *p->lines))
        return false;
    p->lines[p->line_count++] = 0;
    for (size_t i = 0; i < p->len; i++)
        if (p->text[i] == '\n') {
            if (!fa_reserve(&p->lines, &p->line_cap, p->line_count + 1, sizeof *p->lines))
                return false;
            p->lines[p->line_count++] = i + 1;
        }
    return true;
}

static bool parse_file(parser *p, json_object *sm)
{
    bool have_map = false;
    size_t prev_end = 0;
    if (!lex(p))
        return false;
    while (p->cur.kind != T_EOF) {
        size_t at = tok_offset(p);
        bool ok;
        if (is(p, "map")) {
            char *doc = leading_doc(p, at, 0);
            if (doc && !have_map)
                set_str(sm, "description", doc);
            free(doc);
            ok = parse_map_decl(p, sm);
            have_map = true;
        } else if (is(p, "uses")) {
            ok = parse_uses(p, sm);
        } else if (is(p, "imports")) {
            ok = parse_imports(p, sm);
        } else if (is(p, "conceptmap")) {
            ok = parse_conceptmap(p, sm);
        } else if (is(p, "group")) {
            ok = parse_group(p, sm, prev_end);
        } else {
            ok = expected(p, "'map', 'uses', 'imports', 'conceptmap' or 'group'");
        }
        if (!ok)
            return false;
        prev_end = p->last_end;
        if (!have_map)
            return fail_at(p, at, "expected 'map \"url\" = \"name\"' first");
    }
    if (!have_map)
        return fail_at(p, 0, "expected 'map \"url\" = \"name\"': the map declares no url");
    if (!json_object_object_get(sm, "group"))
        return fail_at(p, p->len, "expected at least one 'group'");
    return true;
}

json_object *fml_parse(const char *text, size_t len, const char *file, fml_error *err)
{
    parser p = {.text = text, .len = len, .err = err, .file = file};
    json_object *sm = json_object_new_object();
    if (!sm || !index_lines(&p)) {
        free(p.lines);
        json_object_put(sm);
        if (err)
            *err = (fml_error){.line = 1, .column = 1, .message = "out of memory"};
        return NULL;
    }
    set_str(sm, "resourceType", "StructureMap");
    bool ok = parse_file(&p, sm);
    if (ok) {
        /* status is required (1..1): a map read from text is a draft until published */
        set_str(sm, "status", "draft");
    }
    free(p.lines);
    free(p.comments);
    if (!ok) {
        json_object_put(sm);
        return NULL;
    }
    return sm;
}

/* ---- rendering ----------------------------------------------------------- */

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

static void put_quoted(fj_buf *b, const char *s, char q)
{
    fj_buf_append(b, &q, 1);
    for (; *s; s++) {
        if (*s == q || *s == '\\')
            fj_buf_append(b, "\\", 1);
        if (*s == '\n')
            fj_buf_puts(b, "\\n");
        else
            fj_buf_append(b, s, 1);
    }
    fj_buf_append(b, &q, 1);
}

/* A value[x] (prefix "value" or "defaultValue") as FML: 'string', 12, 1.5, true, or an id as written. */
static bool put_value(fj_buf *b, const json_object *o, const char *prefix)
{
    static const char *const kinds[] = {"String", "Integer", "Decimal", "Boolean", "Id"};
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) {
        char key[48];
        snprintf(key, sizeof key, "%s%s", prefix, kinds[i]);
        json_object *v = json_object_object_get(o, key);
        if (!v)
            continue;
        if (i == 0)
            put_quoted(b, json_object_get_string(v), '\'');
        else if (i == 4)
            fj_buf_puts(b, json_object_get_string(v));
        else
            fj_buf_puts(b, json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
        return true;
    }
    return false;
}

static void put_indent(fj_buf *b, int depth)
{
    for (int i = 0; i < depth; i++)
        fj_buf_puts(b, "  ");
}

static void render_source(fj_buf *b, const json_object *s)
{
    fj_buf_puts(b, jstr(s, "context") ? jstr(s, "context") : "?");
    if (jstr(s, "element"))
        fj_buf_printf(b, ".%s", jstr(s, "element"));
    if (jstr(s, "type"))
        fj_buf_printf(b, " : %s", jstr(s, "type"));
    json_object *min = json_object_object_get(s, "min");
    if (min && jstr(s, "type"))
        fj_buf_printf(b, " %d..%s", json_object_get_int(min), jstr(s, "max") ? jstr(s, "max") : "*");
    fj_buf b2 = {0};
    if (put_value(&b2, s, "defaultValue") && b2.data)
        fj_buf_printf(b, " default %s", b2.data);
    fj_buf_free(&b2);
    if (jstr(s, "listMode"))
        fj_buf_printf(b, " %s", jstr(s, "listMode"));
    if (jstr(s, "variable"))
        fj_buf_printf(b, " as %s", jstr(s, "variable"));
    if (jstr(s, "condition"))
        fj_buf_printf(b, " where (%s)", jstr(s, "condition"));
    if (jstr(s, "check"))
        fj_buf_printf(b, " check (%s)", jstr(s, "check"));
    if (jstr(s, "logMessage"))
        fj_buf_printf(b, " log (%s)", jstr(s, "logMessage"));
}

static void render_call(fj_buf *b, const json_object *t, const char *tr)
{
    fj_buf_printf(b, "%s(", tr);
    for (size_t i = 0; i < jlen(t, "parameter"); i++) {
        json_object *param = jat(t, "parameter", i);
        if (i)
            fj_buf_puts(b, ", ");
        if (!strcmp(tr, "evaluate") && i == 1 && jstr(param, "valueString"))
            fj_buf_puts(b, jstr(param, "valueString"));
        else
            put_value(b, param, "value");
    }
    fj_buf_puts(b, ")");
}

static void render_target(fj_buf *b, const json_object *t)
{
    const char *tr = jstr(t, "transform");
    size_t np = jlen(t, "parameter");
    if (jstr(t, "context")) {
        fj_buf_puts(b, jstr(t, "context"));
        if (jstr(t, "element"))
            fj_buf_printf(b, ".%s", jstr(t, "element"));
        if (tr)
            fj_buf_puts(b, " = ");
    }
    if (tr && !strcmp(tr, "copy") && np == 1) {
        put_value(b, jat(t, "parameter", 0), "value");
    } else if (tr && !strcmp(tr, "evaluate") && np == 1 && jstr(jat(t, "parameter", 0), "valueString")) {
        fj_buf_printf(b, "(%s)", jstr(jat(t, "parameter", 0), "valueString"));
    } else if (tr) {
        render_call(b, t, tr);
    }
    if (jstr(t, "variable"))
        fj_buf_printf(b, " as %s", jstr(t, "variable"));
    for (size_t i = 0; i < jlen(t, "listMode"); i++)
        fj_buf_printf(b, " %s", json_object_get_string(jat(t, "listMode", i)));
}

static void render_rules(fj_buf *b, const json_object *owner, int depth);

static void render_rule(fj_buf *b, const json_object *r, int depth)
{
    put_indent(b, depth);
    for (size_t i = 0; i < jlen(r, "source"); i++) {
        if (i)
            fj_buf_puts(b, ", ");
        render_source(b, jat(r, "source", i));
    }
    for (size_t i = 0; i < jlen(r, "target"); i++) {
        fj_buf_puts(b, i ? ", " : " -> ");
        render_target(b, jat(r, "target", i));
    }
    if (jlen(r, "rule")) {
        fj_buf_puts(b, " then {\n");
        render_rules(b, r, depth + 1);
        put_indent(b, depth);
        fj_buf_puts(b, "}");
    } else {
        for (size_t i = 0; i < jlen(r, "dependent"); i++) {
            json_object *d = jat(r, "dependent", i);
            fj_buf_printf(b, "%s%s(", i ? ", " : " then ", jstr(d, "name") ? jstr(d, "name") : "?");
            for (size_t j = 0; j < jlen(d, "variable"); j++)
                fj_buf_printf(b, "%s%s", j ? ", " : "", json_object_get_string(jat(d, "variable", j)));
            fj_buf_puts(b, ")");
        }
    }
    if (jstr(r, "name")) {
        fj_buf_puts(b, " ");
        put_quoted(b, jstr(r, "name"), '"');
    }
    fj_buf_puts(b, ";");
    if (jstr(r, "documentation") && !strchr(jstr(r, "documentation"), '\n'))
        fj_buf_printf(b, " // %s", jstr(r, "documentation"));
    fj_buf_puts(b, "\n");
}

static void render_rules(fj_buf *b, const json_object *owner, int depth)
{
    for (size_t i = 0; i < jlen(owner, "rule"); i++)
        render_rule(b, jat(owner, "rule", i), depth);
}

static void render_comment(fj_buf *b, const char *text)
{
    while (text && *text) {
        size_t n = strcspn(text, "\n");
        fj_buf_printf(b, "// %.*s\n", (int)n, text);
        text += n + (text[n] == '\n');
    }
}

static void render_group(fj_buf *b, const json_object *g)
{
    fj_buf_puts(b, "\n");
    render_comment(b, jstr(g, "documentation"));
    fj_buf_printf(b, "group %s(", jstr(g, "name") ? jstr(g, "name") : "?");
    for (size_t i = 0; i < jlen(g, "input"); i++) {
        json_object *in = jat(g, "input", i);
        fj_buf_printf(b, "%s%s %s", i ? ", " : "", jstr(in, "mode") ? jstr(in, "mode") : "source",
                      jstr(in, "name") ? jstr(in, "name") : "?");
        if (jstr(in, "type"))
            fj_buf_printf(b, " : %s", jstr(in, "type"));
    }
    fj_buf_puts(b, ")");
    if (jstr(g, "extends"))
        fj_buf_printf(b, " extends %s", jstr(g, "extends"));
    const char *tm = jstr(g, "typeMode");
    if (tm && !strcmp(tm, "types"))
        fj_buf_puts(b, " <<types>>");
    else if (tm && !strcmp(tm, "type-and-types"))
        fj_buf_puts(b, " <<type+>>");
    fj_buf_puts(b, " {\n");
    render_rules(b, g, 1);
    fj_buf_puts(b, "}\n");
}

static const char *equivalence_token(const char *code)
{
    for (size_t i = 0; code && i < sizeof EQUIVALENCES / sizeof *EQUIVALENCES; i++)
        if (!strcmp(EQUIVALENCES[i].code, code))
            return EQUIVALENCES[i].token;
    return "-";
}

static void render_conceptmap(fj_buf *b, const json_object *cm)
{
    fj_buf_puts(b, "\nconceptmap ");
    put_quoted(b, jstr(cm, "id") ? jstr(cm, "id") : "?", '"');
    fj_buf_puts(b, " {\n");
    const char *urls[32];
    size_t n = 0;
    for (size_t i = 0; i < jlen(cm, "group"); i++) {
        const char *pair[2] = {jstr(jat(cm, "group", i), "source"), jstr(jat(cm, "group", i), "target")};
        for (int k = 0; k < 2; k++) {
            size_t j = 0;
            while (j < n && pair[k] && strcmp(urls[j], pair[k]))
                j++;
            if (pair[k] && j == n && n < 32) {
                urls[n++] = pair[k];
                fj_buf_printf(b, "  prefix s%zu = ", n);
                put_quoted(b, pair[k], '"');
                fj_buf_puts(b, "\n");
            }
        }
    }
    for (size_t i = 0; i < jlen(cm, "group"); i++) {
        json_object *g = jat(cm, "group", i);
        size_t si = 0, ti = 0;
        while (si < n && jstr(g, "source") && strcmp(urls[si], jstr(g, "source")))
            si++;
        while (ti < n && jstr(g, "target") && strcmp(urls[ti], jstr(g, "target")))
            ti++;
        for (size_t e = 0; e < jlen(g, "element"); e++) {
            json_object *el = jat(g, "element", e);
            for (size_t t = 0; t < jlen(el, "target"); t++) {
                json_object *tg = jat(el, "target", t);
                fj_buf_printf(b, "  s%zu:", si + 1);
                put_quoted(b, jstr(el, "code") ? jstr(el, "code") : "", '"');
                fj_buf_printf(b, " %s s%zu:", equivalence_token(jstr(tg, "equivalence")), ti + 1);
                put_quoted(b, jstr(tg, "code") ? jstr(tg, "code") : "", '"');
                fj_buf_puts(b, "\n");
            }
        }
    }
    fj_buf_puts(b, "}\n");
}

char *fml_render(const json_object *map)
{
    fj_buf b = {0};
    render_comment(&b, jstr(map, "description"));
    fj_buf_puts(&b, "map ");
    put_quoted(&b, jstr(map, "url") ? jstr(map, "url") : "", '"');
    fj_buf_puts(&b, " = ");
    put_quoted(&b, jstr(map, "name") ? jstr(map, "name") : "", '"');
    fj_buf_puts(&b, "\n\n");
    for (size_t i = 0; i < jlen(map, "structure"); i++) {
        json_object *s = jat(map, "structure", i);
        fj_buf_puts(&b, "uses ");
        put_quoted(&b, jstr(s, "url") ? jstr(s, "url") : "", '"');
        if (jstr(s, "alias"))
            fj_buf_printf(&b, " alias %s", jstr(s, "alias"));
        fj_buf_printf(&b, " as %s\n", jstr(s, "mode") ? jstr(s, "mode") : "source");
    }
    for (size_t i = 0; i < jlen(map, "import"); i++) {
        fj_buf_puts(&b, "imports ");
        put_quoted(&b, json_object_get_string(jat(map, "import", i)), '"');
        fj_buf_puts(&b, "\n");
    }
    for (size_t i = 0; i < jlen(map, "contained"); i++) {
        const char *rt = jstr(jat(map, "contained", i), "resourceType");
        if (rt && !strcmp(rt, "ConceptMap"))
            render_conceptmap(&b, jat(map, "contained", i));
    }
    for (size_t i = 0; i < jlen(map, "group"); i++)
        render_group(&b, jat(map, "group", i));
    return fj_buf_take(&b, NULL);
}
