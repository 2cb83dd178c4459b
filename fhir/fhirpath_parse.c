/*
 * fhir/fhirpath_parse.c — FHIRPath source to an immutable AST, once.
 *
 * A hand-written lexer and a precedence-climbing parser for the FHIRPath N1
 * grammar (the one FHIR R4 uses). Everything that can be decided without
 * data is decided here, so evaluation does not repeat it: function names
 * become ids with their argument counts checked, type names (is, as,
 * ofType, and a leading "Patient") are resolved against the schema, string
 * and date literals are decoded, and the patterns of matches() and
 * replaceMatches() given as literals are compiled to regex_t.
 *
 * The AST and its strings live in the expression's own arena; nothing is
 * written after fp_compile returns, which is what makes a compiled
 * expression shareable between threads.
 *
 * Also here: the expression cache (source text -> compiled expression).
 */
#include "fhir/fhirpath_internal.h"

#include "fhir/array.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FP_MAX_PARSE_DEPTH 150 /* nesting of parentheses, calls and operators */

/* ---- lexer --------------------------------------------------------------- */

typedef enum tok_kind {
    T_EOF,
    T_IDENT,     /* identifier or keyword */
    T_DELIMITED, /* `identifier` */
    T_STRING,    /* 'text' */
    T_NUMBER,
    T_TEMPORAL, /* @2015-02-04, @T14:30 */
    T_SPECIAL,  /* $this, $index, $total */
    T_PUNCT     /* operators and brackets; text holds them */
} tok_kind;

typedef struct token {
    tok_kind kind;
    uint32_t pos, len; /* byte span in the source */
} token;

typedef struct parser {
    const char *src;
    size_t len;
    size_t at; /* lexer position */
    token tok; /* current token */
    fp_expr *expr;
    const fs_schema *schema;
    const fp_functions *functions; /* the host's, or NULL */
    fp_error *err;
    bool failed;
    int depth;
} parser;

/* 0-based character (not byte) position, as the error promises. */
static int char_position(const char *src, size_t byte)
{
    int n = 0;
    for (size_t i = 0; i < byte && src[i]; i++)
        if (((unsigned char)src[i] & 0xC0) != 0x80)
            n++;
    return n;
}

static bool syntax_error(parser *p, uint32_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool syntax_error(parser *p, uint32_t pos, const char *fmt, ...)
{
    if (p->failed)
        return false;
    p->failed = true;
    p->err->position = char_position(p->src, pos);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err->message, sizeof p->err->message, fmt, ap);
    va_end(ap);
    return false;
}

static bool skip_space_and_comments(parser *p)
{
    for (;;) {
        while (p->at < p->len && isspace((unsigned char)p->src[p->at]))
            p->at++;
        if (p->at + 1 < p->len && p->src[p->at] == '/' && p->src[p->at + 1] == '/') {
            while (p->at < p->len && p->src[p->at] != '\n')
                p->at++;
        } else if (p->at + 1 < p->len && p->src[p->at] == '/' && p->src[p->at + 1] == '*') {
            const char *end = strstr(p->src + p->at + 2, "*/");
            if (!end)
                return syntax_error(p, (uint32_t)p->at, "comment not closed (missing '*/')");
            p->at = (size_t)(end - p->src) + 2;
        } else {
            return true;
        }
    }
}

static bool ident_start(char c)
{
    return isalpha((unsigned char)c) || c == '_';
}

static bool ident_char(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

/* Skip a quoted string or delimited identifier starting at p->at (the quote). */
static bool scan_quoted(parser *p, char quote)
{
    size_t start = p->at++;
    while (p->at < p->len && p->src[p->at] != quote) {
        if (p->src[p->at] == '\\')
            p->at++;
        p->at++;
    }
    if (p->at >= p->len)
        return syntax_error(p, (uint32_t)start,
                            quote == '\'' ? "string not closed" : "identifier not closed (missing '`')");
    p->at++;
    return true;
}

static bool next_token(parser *p)
{
    if (!skip_space_and_comments(p))
        return false;
    token *t = &p->tok;
    t->pos = (uint32_t)p->at;
    if (p->at >= p->len) {
        t->kind = T_EOF;
        t->len = 0;
        return true;
    }
    const char *s = p->src + p->at;
    char c = *s;
    if (ident_start(c)) {
        t->kind = T_IDENT;
        while (p->at < p->len && ident_char(p->src[p->at]))
            p->at++;
    } else if (c == '`' || c == '\'') {
        t->kind = c == '`' ? T_DELIMITED : T_STRING;
        if (!scan_quoted(p, c))
            return false;
    } else if (isdigit((unsigned char)c)) {
        t->kind = T_NUMBER;
        while (p->at < p->len && isdigit((unsigned char)p->src[p->at]))
            p->at++;
        if (p->at + 1 < p->len && p->src[p->at] == '.' && isdigit((unsigned char)p->src[p->at + 1])) {
            p->at++;
            while (p->at < p->len && isdigit((unsigned char)p->src[p->at]))
                p->at++;
        }
    } else if (c == '@') {
        t->kind = T_TEMPORAL;
        fp_datetime dt;
        bool saw_t;
        bool time = p->at + 1 < p->len && p->src[p->at + 1] == 'T';
        size_t n = fp_scan_temporal(s + 1 + time, p->len - p->at - 1 - time, time, &dt, &saw_t);
        if (n == 0)
            return syntax_error(p, t->pos, "invalid date/time literal");
        p->at += 1 + time + n;
    } else if (c == '$') {
        t->kind = T_SPECIAL;
        p->at++;
        while (p->at < p->len && ident_char(p->src[p->at]))
            p->at++;
    } else {
        t->kind = T_PUNCT;
        static const char *const two[] = {"!=", "!~", "<=", ">="};
        p->at++;
        for (size_t i = 0; i < 4; i++)
            if (p->at < p->len && c == two[i][0] && p->src[p->at] == two[i][1])
                p->at++;
        if (p->at - t->pos == 1 && !strchr("()[]{}.,+-*/&|=~<>%", c))
            return syntax_error(p, t->pos, "unexpected character '%c'", c);
    }
    t->len = (uint32_t)(p->at - t->pos);
    return true;
}

static bool tok_is(const parser *p, const char *text)
{
    size_t n = strlen(text);
    return (p->tok.kind == T_PUNCT || p->tok.kind == T_IDENT) && p->tok.len == n &&
           !memcmp(p->src + p->tok.pos, text, n);
}

static bool expect(parser *p, const char *text, const char *what)
{
    if (!tok_is(p, text)) {
        if (p->tok.kind == T_EOF)
            return syntax_error(p, p->tok.pos, "expected '%s' %s, found the end of the expression", text, what);
        return syntax_error(p, p->tok.pos, "expected '%s' %s, found '%.*s'", text, what, (int)p->tok.len,
                            p->src + p->tok.pos);
    }
    return next_token(p);
}

/* ---- AST construction ---------------------------------------------------- */

static fp_ast *new_node(parser *p, fp_ast_kind kind, uint32_t pos)
{
    fp_ast *n = fpa_alloc(p->expr->mem, sizeof *n);
    if (!n) {
        syntax_error(p, pos, "out of memory");
        return NULL;
    }
    memset(n, 0, sizeof *n);
    n->kind = (uint8_t)kind;
    n->pos = pos;
    return n;
}

/* Decode a quoted token's escapes (\' \" \` \\ \/ \f \n \r \t \uXXXX) into the arena. */
static char *decode_quoted(parser *p, const token *t, uint32_t *out_len)
{
    const char *s = p->src + t->pos + 1;
    size_t n = t->len - 2;
    char *out = fpa_alloc(p->expr->mem, n + 1);
    if (!out) {
        syntax_error(p, t->pos, "out of memory");
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') {
            out[o++] = s[i];
            continue;
        }
        char e = s[++i];
        switch (e) {
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u': {
            unsigned cp = 0;
            if (i + 4 >= n) {
                syntax_error(p, t->pos + 1 + (uint32_t)i, "\\u needs four hex digits");
                return NULL;
            }
            for (int k = 1; k <= 4; k++) {
                char h = s[i + k];
                if (!isxdigit((unsigned char)h)) {
                    syntax_error(p, t->pos + 1 + (uint32_t)i, "\\u needs four hex digits");
                    return NULL;
                }
                cp = cp * 16 + (unsigned)(isdigit((unsigned char)h) ? h - '0' : (tolower((unsigned char)h) - 'a' + 10));
            }
            i += 4;
            /* UTF-8 (surrogates are written as they come; the pair case is rare in expressions) */
            if (cp < 0x80) {
                out[o++] = (char)cp;
            } else if (cp < 0x800) {
                out[o++] = (char)(0xC0 | (cp >> 6));
                out[o++] = (char)(0x80 | (cp & 0x3F));
            } else {
                out[o++] = (char)(0xE0 | (cp >> 12));
                out[o++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[o++] = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default: out[o++] = e; break; /* \' \" \` \\ \/ and anything else: the character itself */
        }
    }
    out[o] = '\0';
    *out_len = (uint32_t)o;
    return out;
}

/* The text of an identifier token (plain or `delimited`), NUL-terminated in the arena. */
static const char *ident_text(parser *p, const token *t, uint32_t *len)
{
    if (t->kind == T_DELIMITED)
        return decode_quoted(p, t, len);
    *len = t->len;
    char *s = fpa_strndup(p->expr->mem, p->src + t->pos, t->len);
    if (!s)
        syntax_error(p, t->pos, "out of memory");
    return s;
}

static bool is_identifier(const token *t)
{
    return t->kind == T_IDENT || t->kind == T_DELIMITED;
}

/* ---- type specifiers ----------------------------------------------------- */

static int system_type(const char *name)
{
    static const struct {
        const char *name;
        fp_kind kind;
    } types[] = {{"Boolean", FP_BOOLEAN}, {"Integer", FP_INTEGER},  {"Decimal", FP_DECIMAL},
                 {"String", FP_STRING},   {"Date", FP_DATE},        {"DateTime", FP_DATETIME},
                 {"Time", FP_TIME},       {"Quantity", FP_QUANTITY}};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
        if (!strcmp(types[i].name, name))
            return (int)types[i].kind;
    return -1;
}

/* qualifiedIdentifier: [System. | FHIR.] name */
static bool parse_type_spec(parser *p, fp_typespec *ts)
{
    if (!is_identifier(&p->tok))
        return syntax_error(p, p->tok.pos, "expected a type name");
    token first = p->tok;
    uint32_t len;
    const char *name = ident_text(p, &first, &len);
    if (!name || !next_token(p))
        return false;
    const char *ns = NULL;
    if (tok_is(p, ".")) {
        if (!next_token(p))
            return false;
        if (!is_identifier(&p->tok))
            return syntax_error(p, p->tok.pos, "expected a type name after '%s.'", name);
        ns = name;
        name = ident_text(p, &p->tok, &len);
        if (!name || !next_token(p))
            return false;
    }
    ts->fhir = NULL;
    ts->system = -1;
    bool system_ns = ns && !strcmp(ns, "System"), fhir_ns = ns && !strcmp(ns, "FHIR");
    if (ns && !system_ns && !fhir_ns)
        return syntax_error(p, first.pos, "unknown type namespace '%s' (expected System or FHIR)", ns);
    if (!system_ns)
        ts->fhir = fs_type_by_name(p->schema, name, len);
    if (!fhir_ns && (!ts->fhir || !strcmp(name, "Quantity")))
        ts->system = system_type(name);
    if (!ts->fhir && ts->system < 0)
        return syntax_error(p, first.pos, "unknown type '%s%s%s'", ns ? ns : "", ns ? "." : "", name);
    return true;
}

/* ---- regular expressions ------------------------------------------------- */

/*
 * A bracket expression of the pattern at *i ('[' ... ']') rewritten for POSIX:
 * there a backslash is literal and ']' must come first, so escaped members
 * are collected and placed where POSIX needs them (']' first, '[' and '-' last).
 */
static size_t regex_class(const char *pattern, size_t len, size_t *i, char *out)
{
    size_t o = 0, j = *i + 1;
    bool rbracket = false, lbracket = false, dash = false;
    out[o++] = '[';
    if (j < len && pattern[j] == '^')
        out[o++] = pattern[j++];
    char members[1024];
    size_t m = 0;
    if (j < len && pattern[j] == ']') { /* a leading ']' is a member */
        rbracket = true;
        j++;
    }
    for (; j < len && pattern[j] != ']' && m + 16 < sizeof members; j++) {
        char ch = pattern[j];
        if (ch == '\\' && j + 1 < len) {
            char e = pattern[++j];
            const char *rep = e == 'd'   ? "0-9"
                              : e == 'w' ? "A-Za-z0-9_"
                              : e == 's' ? "[:space:]"
                              : e == 'n' ? "\n"
                              : e == 't' ? "\t"
                              : e == 'r' ? "\r"
                                         : NULL;
            if (rep) {
                memcpy(members + m, rep, strlen(rep));
                m += strlen(rep);
            } else if (e == ']') {
                rbracket = true;
            } else if (e == '[') {
                lbracket = true;
            } else if (e == '-') {
                dash = true;
            } else {
                members[m++] = e;
            }
            continue;
        }
        if (ch == '[' && j + 1 < len && (pattern[j + 1] == ':' || pattern[j + 1] == '.' || pattern[j + 1] == '=')) {
            /* a POSIX class such as [:alpha:] stays as written */
            const char *close = strstr(pattern + j + 2, ":]");
            size_t n = close ? (size_t)(close - (pattern + j)) + 2 : 1;
            if (m + n >= sizeof members)
                break;
            memcpy(members + m, pattern + j, n);
            m += n;
            j += n - 1;
            continue;
        }
        if (ch == '[')
            lbracket = true;
        else
            members[m++] = ch;
    }
    if (rbracket)
        out[o++] = ']';
    memcpy(out + o, members, m);
    o += m;
    if (lbracket)
        out[o++] = '[';
    if (dash)
        out[o++] = '-';
    out[o++] = ']';
    *i = j; /* at the closing ']' (or the end) */
    return o;
}

/*
 * FHIRPath patterns are written in the common (PCRE-like) dialect; POSIX
 * extended regexes lack the shorthand classes, so \d \w \s and their
 * negations are rewritten. Without REG_NEWLINE '.' matches a newline, which
 * is the single-line mode the specification asks for.
 */
int fp_regex_compile(regex_t *re, const char *pattern, size_t len, bool full)
{
    char *buf = malloc(len * 12 + 1100);
    if (!buf)
        return REG_ESPACE;
    size_t o = 0;
    if (full)
        buf[o++] = '^', buf[o++] = '(';
    for (size_t i = 0; i < len; i++) {
        char c = pattern[i];
        if (c == '\\' && i + 1 < len) {
            char e = pattern[++i];
            const char *rep = e == 'd'   ? "[0-9]"
                              : e == 'D' ? "[^0-9]"
                              : e == 'w' ? "[A-Za-z0-9_]"
                              : e == 'W' ? "[^A-Za-z0-9_]"
                              : e == 's' ? "[[:space:]]"
                              : e == 'S' ? "[^[:space:]]"
                              : e == 'n' ? "\n"
                              : e == 't' ? "\t"
                              : e == 'r' ? "\r"
                                         : NULL;
            if (rep) {
                memcpy(buf + o, rep, strlen(rep));
                o += strlen(rep);
            } else {
                buf[o++] = '\\';
                buf[o++] = e;
            }
        } else if (c == '[') {
            o += regex_class(pattern, len, &i, buf + o);
        } else {
            buf[o++] = c;
        }
    }
    if (full)
        buf[o++] = ')', buf[o++] = '$';
    buf[o] = '\0';
    int rc = regcomp(re, buf, REG_EXTENDED);
    free(buf);
    return rc;
}

static bool attach_regex(parser *p, fp_ast *call)
{
    const fp_ast *pat = call->args[0];
    if (pat->kind != A_LITERAL || pat->literal.kind != FP_STRING)
        return true; /* computed at run time */
    fp_expr *e = p->expr;
    regex_t *re = malloc(sizeof *re);
    if (!re || !fa_reserve(&e->regexes, &e->regex_capacity, e->regex_count + 1, sizeof *e->regexes)) {
        free(re);
        return syntax_error(p, pat->pos, "out of memory");
    }
    int rc = fp_regex_compile(re, pat->literal.u.string, pat->literal.len, call->op == F_MATCHESFULL);
    if (rc != 0) {
        char msg[120];
        regerror(rc, re, msg, sizeof msg);
        free(re);
        return syntax_error(p, pat->pos, "invalid regular expression: %s", msg);
    }
    e->regexes[e->regex_count++] = re;
    call->regex = re;
    return true;
}

/* ---- expressions --------------------------------------------------------- */

static fp_ast *parse_expr(parser *p, int min_prec);

typedef struct binop_info {
    const char *text;
    fp_binop op;
    int prec;
} binop_info;

/* Precedence from loosest (implies) to tightest (multiplication); is/as sit between + and |. */
static const binop_info binops[] = {
    {"implies", OP_IMPLIES, 1},
    {"or", OP_OR, 2},
    {"xor", OP_XOR, 2},
    {"and", OP_AND, 3},
    {"in", OP_IN, 4},
    {"contains", OP_CONTAINS, 4},
    {"=", OP_EQ, 5},
    {"~", OP_EQUIV, 5},
    {"!=", OP_NE, 5},
    {"!~", OP_NEQUIV, 5},
    {"<", OP_LT, 6},
    {">", OP_GT, 6},
    {"<=", OP_LE, 6},
    {">=", OP_GE, 6},
    {"|", OP_UNION, 7},
    {"is", 0, 8},
    {"as", 0, 8},
    {"+", OP_ADD, 9},
    {"-", OP_SUB, 9},
    {"&", OP_CONCAT, 9},
    {"*", OP_MUL, 10},
    {"/", OP_DIV, 10},
    {"div", OP_IDIV, 10},
    {"mod", OP_MOD, 10},
};

static const binop_info *current_binop(const parser *p)
{
    for (size_t i = 0; i < sizeof binops / sizeof *binops; i++)
        if (tok_is(p, binops[i].text))
            return &binops[i];
    return NULL;
}

static fp_ast *parse_function(parser *p, fp_ast *target, const token *name_tok)
{
    uint32_t len;
    const char *name = ident_text(p, name_tok, &len);
    if (!name)
        return NULL;
    /* built-ins first: a host function can never shadow one (fp_functions_add refuses the name anyway) */
    const fp_function *f = fp_function_find(name, len);
    const fp_host_function *host = f ? NULL : fp_host_find(p->functions, name, len);
    if (!f && !host) {
        syntax_error(p, name_tok->pos, "unknown function '%s'", name);
        return NULL;
    }
    unsigned min_args = f ? f->min_args : host->min_args, max_args = f ? f->max_args : host->max_args;
    fp_ast *n = new_node(p, A_CALL, name_tok->pos);
    if (!n || !next_token(p)) /* '(' */
        return NULL;
    n->target = target;
    n->op = f ? f->id : F_HOST;
    n->host = host;
    n->name = name;
    n->name_len = len;
    fp_ast *args[FP_MAX_ARGS];
    unsigned argc = 0;
    if (!tok_is(p, ")")) {
        for (;;) {
            if (argc == FP_MAX_ARGS) {
                syntax_error(p, p->tok.pos, "too many arguments");
                return NULL;
            }
            if (f && (f->flags & FN_TYPE_ARG)) {
                fp_ast *t = new_node(p, A_EMPTY, p->tok.pos);
                if (!t || !parse_type_spec(p, &n->type))
                    return NULL;
                args[argc++] = t;
            } else {
                fp_ast *a = parse_expr(p, 1);
                if (!a)
                    return NULL;
                args[argc++] = a;
            }
            if (!tok_is(p, ","))
                break;
            if (!next_token(p))
                return NULL;
        }
    }
    if (!expect(p, ")", "to close the argument list"))
        return NULL;
    if (argc < min_args || argc > max_args) {
        if (min_args == max_args)
            syntax_error(p, name_tok->pos, "%s() takes %u argument%s, not %u", name, min_args, min_args == 1 ? "" : "s",
                         argc);
        else
            syntax_error(p, name_tok->pos, "%s() takes %u to %u arguments, not %u", name, min_args, max_args, argc);
        return NULL;
    }
    n->argc = (uint16_t)argc;
    if (argc) {
        const fp_ast **list = fpa_alloc(p->expr->mem, argc * sizeof *list);
        if (!list) {
            syntax_error(p, name_tok->pos, "out of memory");
            return NULL;
        }
        memcpy(list, args, argc * sizeof *list);
        n->args = list;
    }
    if ((n->op == F_MATCHES || n->op == F_MATCHESFULL || n->op == F_REPLACEMATCHES) && !attach_regex(p, n))
        return NULL;
    return n;
}

/* invocation: identifier | function | $this | $index | $total */
static fp_ast *parse_invocation(parser *p, fp_ast *target)
{
    token t = p->tok;
    if (t.kind == T_SPECIAL) {
        fp_ast_kind k;
        if (t.len == 5 && !memcmp(p->src + t.pos, "$this", 5))
            k = A_THIS;
        else if (t.len == 6 && !memcmp(p->src + t.pos, "$index", 6))
            k = A_INDEX;
        else if (t.len == 6 && !memcmp(p->src + t.pos, "$total", 6))
            k = A_TOTAL;
        else {
            syntax_error(p, t.pos, "unknown special variable '%.*s'", (int)t.len, p->src + t.pos);
            return NULL;
        }
        if (target) {
            syntax_error(p, t.pos, "'%.*s' cannot follow '.'", (int)t.len, p->src + t.pos);
            return NULL;
        }
        fp_ast *n = new_node(p, k, t.pos);
        return n && next_token(p) ? n : NULL;
    }
    if (!is_identifier(&t)) {
        if (t.kind == T_EOF)
            syntax_error(p, t.pos, "expected a name, found the end of the expression");
        else
            syntax_error(p, t.pos, "expected a name, found '%.*s'", (int)t.len, p->src + t.pos);
        return NULL;
    }
    if (!next_token(p))
        return NULL;
    if (tok_is(p, "("))
        return parse_function(p, target, &t);
    fp_ast *n = new_node(p, A_MEMBER, t.pos);
    if (!n)
        return NULL;
    n->target = target;
    n->name = ident_text(p, &t, &n->name_len);
    if (!n->name)
        return NULL;
    if (isupper((unsigned char)n->name[0]))
        n->name_type = fs_type_by_name(p->schema, n->name, n->name_len);
    return n;
}

static fp_ast *literal_node(parser *p, uint32_t pos, const fp_item *it)
{
    fp_ast *n = new_node(p, A_LITERAL, pos);
    if (n)
        n->literal = *it;
    return n;
}

static fp_ast *parse_number(parser *p)
{
    token t = p->tok;
    long double v;
    int scale;
    bool integral;
    int64_t iv;
    if (!fp_parse_number(p->src + t.pos, t.len, &v, &scale, &integral, &iv)) {
        syntax_error(p, t.pos, "invalid number");
        return NULL;
    }
    if (!next_token(p))
        return NULL;
    fp_item it = {0};
    /* A quantity: a number followed by a unit string or a calendar keyword. */
    const char *cal = p->tok.kind == T_IDENT ? fp_calendar_unit(p->src + p->tok.pos, p->tok.len) : NULL;
    if (p->tok.kind == T_STRING || cal) {
        it.kind = FP_QUANTITY;
        it.scale = (int16_t)scale;
        it.u.quantity.value = v;
        if (cal) {
            it.u.quantity.unit = cal;
            it.len = (uint32_t)strlen(cal);
            it.calendar = 1;
        } else {
            /* Units outside the UCUM subset we convert are kept: they still compare equal to themselves. */
            it.u.quantity.unit = decode_quoted(p, &p->tok, &it.len);
            if (!it.u.quantity.unit)
                return NULL;
        }
        if (!next_token(p))
            return NULL;
    } else if (integral) {
        it = fp_integer(iv);
    } else {
        it.kind = FP_DECIMAL;
        it.scale = (int16_t)scale;
        it.u.decimal = v;
    }
    return literal_node(p, t.pos, &it);
}

static fp_ast *parse_temporal(parser *p)
{
    token t = p->tok;
    fp_item it = {0};
    bool saw_t;
    bool time = p->src[t.pos + 1] == 'T';
    fp_scan_temporal(p->src + t.pos + 1 + time, t.len - 1 - time, time, &it.u.dt, &saw_t);
    it.kind = time ? FP_TIME : saw_t ? FP_DATETIME : FP_DATE;
    if (!next_token(p))
        return NULL;
    return literal_node(p, t.pos, &it);
}

static fp_ast *parse_term(parser *p)
{
    token t = p->tok;
    switch (t.kind) {
    case T_NUMBER: return parse_number(p);
    case T_TEMPORAL: return parse_temporal(p);
    case T_STRING: {
        fp_item it = {.kind = FP_STRING};
        it.u.string = decode_quoted(p, &t, &it.len);
        if (!it.u.string || !next_token(p))
            return NULL;
        return literal_node(p, t.pos, &it);
    }
    case T_PUNCT:
        if (tok_is(p, "(")) {
            if (!next_token(p))
                return NULL;
            fp_ast *e = parse_expr(p, 1);
            if (!e || !expect(p, ")", "to close '('"))
                return NULL;
            return e;
        }
        if (tok_is(p, "{")) {
            if (!next_token(p) || !expect(p, "}", "('{}' is the empty collection)"))
                return NULL;
            return new_node(p, A_EMPTY, t.pos);
        }
        if (tok_is(p, "%")) {
            if (!next_token(p))
                return NULL;
            token v = p->tok;
            if (!is_identifier(&v) && v.kind != T_STRING) {
                syntax_error(p, v.pos, "expected a variable name after '%%'");
                return NULL;
            }
            fp_ast *n = new_node(p, A_VAR, t.pos);
            if (!n)
                return NULL;
            n->name = v.kind == T_IDENT ? ident_text(p, &v, &n->name_len) : decode_quoted(p, &v, &n->name_len);
            if (!n->name || !next_token(p))
                return NULL;
            return n;
        }
        break;
    case T_IDENT:
        if (tok_is(p, "true") || tok_is(p, "false")) {
            fp_item it = fp_boolean(tok_is(p, "true"));
            if (!next_token(p))
                return NULL;
            return literal_node(p, t.pos, &it);
        }
        return parse_invocation(p, NULL);
    case T_DELIMITED:
    case T_SPECIAL: return parse_invocation(p, NULL);
    case T_EOF: syntax_error(p, t.pos, "expression expected, found the end"); return NULL;
    default: break;
    }
    syntax_error(p, t.pos, "unexpected '%.*s'", (int)t.len, p->src + t.pos);
    return NULL;
}

/* term followed by any number of .invocation and [index]. */
static fp_ast *parse_postfix(parser *p)
{
    fp_ast *e = parse_term(p);
    while (e) {
        if (tok_is(p, ".")) {
            if (!next_token(p))
                return NULL;
            e = parse_invocation(p, e);
        } else if (tok_is(p, "[")) {
            fp_ast *n = new_node(p, A_INDEXER, p->tok.pos);
            if (!n || !next_token(p))
                return NULL;
            n->target = e;
            n->right = parse_expr(p, 1);
            if (!n->right || !expect(p, "]", "to close the index"))
                return NULL;
            e = n;
        } else {
            break;
        }
    }
    return e;
}

static fp_ast *parse_unary(parser *p)
{
    if (tok_is(p, "+") || tok_is(p, "-")) {
        token t = p->tok;
        bool minus = tok_is(p, "-");
        if (!next_token(p))
            return NULL;
        fp_ast *operand = parse_unary(p);
        if (!operand || !minus)
            return operand;
        fp_ast *n = new_node(p, A_NEGATE, t.pos);
        if (n)
            n->target = operand;
        return n;
    }
    return parse_postfix(p);
}

static fp_ast *parse_expr(parser *p, int min_prec)
{
    if (++p->depth > FP_MAX_PARSE_DEPTH) {
        syntax_error(p, p->tok.pos, "expression nested too deeply");
        return NULL;
    }
    fp_ast *left = parse_unary(p);
    while (left) {
        const binop_info *b = current_binop(p);
        if (!b || b->prec < min_prec)
            break;
        token t = p->tok;
        if (!next_token(p))
            return NULL;
        if (b->prec == 8) { /* is / as take a type, not an expression */
            fp_ast *n = new_node(p, b->text[0] == 'i' ? A_IS : A_AS, t.pos);
            if (!n || !parse_type_spec(p, &n->type))
                return NULL;
            n->target = left;
            left = n;
            continue;
        }
        fp_ast *right = parse_expr(p, b->prec + 1);
        if (!right)
            return NULL;
        fp_ast *n = new_node(p, A_BINARY, t.pos);
        if (!n)
            return NULL;
        n->op = (uint8_t)b->op;
        n->target = left;
        n->right = right;
        left = n;
    }
    p->depth--;
    return left;
}

/* ---- compile ------------------------------------------------------------- */

void fp_expr_free(fp_expr *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->regex_count; i++) {
        regfree(e->regexes[i]);
        free(e->regexes[i]);
    }
    free(e->regexes);
    fp_arena_free(e->mem);
    free(e->source);
    free(e);
}

const char *fp_expr_source(const fp_expr *e)
{
    return e->source;
}

fp_expr *fp_compile(const char *source, const fs_schema *schema, fp_error *err)
{
    fp_compile_options opts = {.schema = schema};
    return fp_compile_with(source, &opts, err);
}

fp_expr *fp_compile_with(const char *source, const fp_compile_options *opts, fp_error *err)
{
    const fs_schema *schema = opts ? opts->schema : NULL;
    fp_error scratch;
    if (!err)
        err = &scratch;
    err->position = -1;
    err->message[0] = '\0';
    fp_expr *e = calloc(1, sizeof *e);
    if (!e || !(e->source = strdup(source)) || !(e->mem = fp_arena_new())) {
        snprintf(err->message, sizeof err->message, "out of memory");
        fp_expr_free(e);
        return NULL;
    }
    e->schema = schema ? schema : fs_r4();
    parser p = {.src = e->source,
                .len = strlen(source),
                .expr = e,
                .schema = e->schema,
                .functions = opts ? opts->functions : NULL,
                .err = err};
    fp_ast *root = NULL;
    if (next_token(&p)) {
        root = parse_expr(&p, 1);
        if (root && p.tok.kind != T_EOF)
            syntax_error(&p, p.tok.pos, "unexpected '%.*s' after the end of the expression", (int)p.tok.len,
                         p.src + p.tok.pos);
    }
    if (p.failed || !root) {
        if (!p.failed)
            syntax_error(&p, 0, "empty expression");
        fp_expr_free(e);
        return NULL;
    }
    e->root = root;
    return e;
}

/* ---- cache --------------------------------------------------------------- */

typedef struct cache_entry {
    char *source; /* NULL = free slot */
    uint64_t hash;
    fp_expr *expr; /* NULL when the source did not compile */
    fp_error err;
} cache_entry;

struct fp_cache {
    fp_compile_options opts; /* schema always set */
    pthread_mutex_t lock;
    cache_entry *slots;
    size_t cap, count; /* cap is a power of two, at most half full */
};

static uint64_t hash_string(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

fp_cache *fp_cache_new(const fs_schema *schema)
{
    fp_compile_options opts = {.schema = schema};
    return fp_cache_new_with(&opts);
}

fp_cache *fp_cache_new_with(const fp_compile_options *opts)
{
    fp_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (opts)
        c->opts = *opts;
    if (!c->opts.schema)
        c->opts.schema = fs_r4();
    c->cap = 64;
    c->slots = calloc(c->cap, sizeof *c->slots);
    if (!c->slots) {
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

static cache_entry *cache_slot(cache_entry *slots, size_t cap, const char *source, uint64_t h)
{
    size_t i = h & (cap - 1);
    while (slots[i].source && (slots[i].hash != h || strcmp(slots[i].source, source)))
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

static bool cache_grow(fp_cache *c)
{
    size_t cap = c->cap * 2;
    cache_entry *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return false;
    for (size_t i = 0; i < c->cap; i++)
        if (c->slots[i].source)
            *cache_slot(slots, cap, c->slots[i].source, c->slots[i].hash) = c->slots[i];
    free(c->slots);
    c->slots = slots;
    c->cap = cap;
    return true;
}

const fp_expr *fp_cache_get(fp_cache *c, const char *source, fp_error *err)
{
    uint64_t h = hash_string(source);
    pthread_mutex_lock(&c->lock);
    cache_entry *e = cache_slot(c->slots, c->cap, source, h);
    if (!e->source && (c->count + 1) * 2 > c->cap) {
        if (cache_grow(c))
            e = cache_slot(c->slots, c->cap, source, h);
    }
    if (!e->source) {
        char *copy = strdup(source);
        if (!copy) {
            pthread_mutex_unlock(&c->lock);
            if (err) {
                err->position = -1;
                snprintf(err->message, sizeof err->message, "out of memory");
            }
            return NULL;
        }
        e->expr = fp_compile_with(source, &c->opts, &e->err);
        e->source = copy;
        e->hash = h;
        c->count++;
    }
    const fp_expr *expr = e->expr;
    if (!expr && err)
        *err = e->err;
    pthread_mutex_unlock(&c->lock);
    return expr;
}

size_t fp_cache_count(const fp_cache *c)
{
    return c->count;
}

void fp_cache_free(fp_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->cap; i++) {
        free(c->slots[i].source);
        fp_expr_free(c->slots[i].expr);
    }
    free(c->slots);
    pthread_mutex_destroy(&c->lock);
    free(c);
}
