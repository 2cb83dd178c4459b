/*
 * fhir/json.c — strict RFC 8259 parser producing the flat node array of
 * fhir/json.h.
 *
 * Approach
 *
 *  - One forward pass, no recursion. Open arrays/objects live on an explicit
 *    stack of node indices (sized by max_depth), so hostile nesting cannot
 *    overflow the C stack. A container's node is emitted when it opens; its
 *    `size` is patched when it closes (count - index), which is what makes
 *    "next sibling = i + size" work. `len` counts completed members and is
 *    bumped each time a member is followed by ',' or the closing bracket.
 *
 *  - Nodes go into one array that grows by 1.5x; the first allocation is
 *    guessed from the input size (len/16; FHIR resources measure 18-55 bytes
 *    per node), so a typical parse never reallocates; untouched pages of the
 *    over-estimate cost address space only.
 *
 *  - Strings: most FHIR strings contain no escapes, so a fast scan (SSE2
 *    when available: 16 bytes per step) looks for the bytes that need
 *    attention — '"', '\\', control characters and non-ASCII. Non-ASCII is
 *    validated as UTF-8 sequence by sequence. Only after the first backslash
 *    do we start rewriting the string in place; the decoded form is never
 *    longer than the source, so the write cursor trails the read cursor.
 *
 *  - Duplicate keys: for the first 32 keys of an object each new key is
 *    compared with the earlier ones (FHIR objects are small, this is the
 *    cheapest way). Objects with more keys are checked again when they close
 *    by sorting their key indices (stable merge sort on decoded bytes) and
 *    flagging every key equal to its predecessor: O(n log n) whatever the
 *    input, so crafted keys cannot make a large object quadratic (a hash
 *    table could be flooded).
 *
 *  - Positions: nodes store byte offsets only. Lines are computed on demand
 *    (errors, fj_line_col) by counting '\n' bytes. Because decoding "\n"
 *    escapes in place writes real newline bytes into the buffer, the count
 *    skips the decoded bytes of every string node; raw newlines can never be
 *    inside a string (control characters are rejected), so what remains are
 *    exactly the document's line breaks. A UTF-8 BOM is not counted as
 *    columns: line 1 starts after it, as in an editor.
 *
 *  - Errors are values: the first problem stops the parse; the message says
 *    what was expected and what was found, at the offending byte.
 */
#include "fhir/json.h"

#include "fhir/array.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__) && defined(__GNUC__)
#include <emmintrin.h>
#define FJ_USE_SSE2 1
#endif

/* Objects with up to this many keys are checked for duplicates linearly. */
#define KEY_SCAN_LIMIT 32u
/* Stack entries kept on the C stack; deeper limits allocate. */
#define LOCAL_STACK 256u

typedef struct parser {
    unsigned char *text;
    size_t len;
    fj_node *nodes;
    uint32_t count, cap;
    uint32_t *stack; /* node indices of the open containers, innermost last */
    unsigned depth, max_depth;
    uint32_t *scratch; /* key indices when sorting a large object's keys */
    size_t scratch_cap;
    fj_error *err;
    size_t err_anchor; /* offset from which err->offset is on the same line */
} parser;

/* ------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------ */

/*
 * Record an error at `offset`. `anchor` <= offset is a position known to lie
 * outside any string on the same source line (the string's opening quote for
 * errors inside strings): the line is counted up to the anchor, because the
 * bytes of a string being decoded may already have been rewritten.
 */
static void *fail_anchored(parser *ps, size_t offset, size_t anchor, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->err->message, sizeof ps->err->message, fmt, ap);
    va_end(ap);
    ps->err->offset = offset;
    ps->err_anchor = anchor;
    return NULL;
}

#define OFFSET(ps, ptr) ((size_t)((ptr) - (ps)->text))
#define fail_at(ps, ptr, ...) fail_anchored((ps), OFFSET(ps, ptr), OFFSET(ps, ptr), __VA_ARGS__)

/* Human description of the byte at p ("'x'", "byte 0x01", "end of input"). */
static const char *describe(const parser *ps, const unsigned char *p, char buf[16])
{
    if (p >= ps->text + ps->len)
        return "end of input";
    if (*p > ' ' && *p < 0x7f)
        snprintf(buf, 16, "'%c'", *p);
    else
        snprintf(buf, 16, "byte 0x%02X", *p);
    return buf;
}

static void *fail_expected(parser *ps, const unsigned char *p, const char *expected)
{
    char buf[16];
    return fail_at(ps, p, "%s, found %s", expected, describe(ps, p, buf));
}

/* A value was expected at p; name the common non-JSON habits explicitly. */
static void *fail_value(parser *ps, const unsigned char *p)
{
    if (p < ps->text + ps->len) {
        switch (*p) {
        case '\'': return fail_at(ps, p, "strings must use double quotes, found '''");
        case '/': return fail_at(ps, p, "comments are not allowed in JSON");
        case 'N':
        case 'I': return fail_at(ps, p, "NaN and Infinity are not allowed in JSON");
        case '+': return fail_at(ps, p, "numbers must not start with '+'");
        case '.': return fail_at(ps, p, "numbers must have a digit before '.'");
        default: break;
        }
    }
    return fail_expected(ps, p, "expected a value");
}

static void *fail_oom(parser *ps, const unsigned char *p)
{
    return fail_at(ps, p, "out of memory");
}

/* "4 GiB", "512 MiB", "64 KiB" or "1000 bytes", for the size-limit message. */
static void format_size(size_t n, char *buf, size_t cap)
{
    if (n >= ((size_t)1 << 30) && n % ((size_t)1 << 30) == 0)
        snprintf(buf, cap, "%zu GiB", n >> 30);
    else if (n >= ((size_t)1 << 20) && n % ((size_t)1 << 20) == 0)
        snprintf(buf, cap, "%zu MiB", n >> 20);
    else if (n >= 1024 && n % 1024 == 0)
        snprintf(buf, cap, "%zu KiB", n >> 10);
    else
        snprintf(buf, cap, "%zu bytes", n);
}

/* ------------------------------------------------------------------------
 * Lines and columns
 * ------------------------------------------------------------------------ */

typedef struct line_scan {
    uint32_t *starts; /* if non-NULL, receives the start offset of each line */
    uint32_t lines;   /* lines seen so far (>= 1) */
    size_t last;      /* start offset of the latest line */
} line_scan;

static void scan_breaks(const unsigned char *text, size_t from, size_t to, line_scan *ls)
{
    while (from < to) {
        const unsigned char *nl = memchr(text + from, '\n', to - from);
        if (!nl)
            return;
        from = (size_t)(nl - text) + 1;
        if (ls->starts)
            ls->starts[ls->lines] = (uint32_t)from;
        ls->lines++;
        ls->last = from;
    }
}

/* Count line breaks in text[ls->last, limit), skipping decoded string bytes. */
static void scan_lines(const unsigned char *text, size_t limit, const fj_node *nodes, uint32_t count, line_scan *ls)
{
    size_t seg = ls->last;
    for (uint32_t i = 0; i < count; i++) {
        if (nodes[i].type != FJ_STRING)
            continue;
        size_t open = nodes[i].pos;
        if (open >= limit)
            break;
        if (seg < open)
            scan_breaks(text, seg, open, ls);
        /* Past the decoded bytes only source bytes of the string remain,
         * and those never include a raw newline. */
        seg = open + 1 + nodes[i].len;
    }
    if (seg < limit)
        scan_breaks(text, seg, limit, ls);
}

static size_t bom_length(const unsigned char *text, size_t len)
{
    return len >= 3 && text[0] == 0xEF && text[1] == 0xBB && text[2] == 0xBF ? 3 : 0;
}

static void set_line_col(size_t offset, size_t line_start, uint32_t line, unsigned *l, unsigned *c)
{
    *l = line;
    *c = offset >= line_start ? (unsigned)(offset - line_start + 1) : 1;
}

/* Line/column for an error, from the nodes completed so far. */
static void locate_error(parser *ps)
{
    size_t anchor = ps->err_anchor, offset = ps->err->offset;
    line_scan ls = {NULL, 1, bom_length(ps->text, ps->len)};
    scan_lines(ps->text, anchor, ps->nodes, ps->count, &ls);
    set_line_col(offset, ls.last, ls.lines, &ps->err->line, &ps->err->column);
}

static void build_line_index(fj_doc *d)
{
    const unsigned char *text = (const unsigned char *)d->text;
    line_scan ls = {NULL, 1, bom_length(text, d->text_len)};
    scan_lines(text, d->text_len, d->nodes, d->count, &ls);
    uint32_t *starts = malloc((size_t)ls.lines * sizeof *starts);
    if (!starts)
        return; /* fj_line_col falls back to counting */
    starts[0] = (uint32_t)bom_length(text, d->text_len);
    ls = (line_scan){starts, 1, starts[0]};
    scan_lines(text, d->text_len, d->nodes, d->count, &ls);
    d->line_starts = starts;
    d->line_count = ls.lines;
}

void fj_line_col(fj_doc *d, size_t offset, unsigned *line, unsigned *column)
{
    if (!d->text) {
        *line = 1;
        *column = (unsigned)offset + 1;
        return;
    }
    if (offset > d->text_len)
        offset = d->text_len;
    if (!d->line_starts)
        build_line_index(d);
    if (!d->line_starts) {
        line_scan ls = {NULL, 1, bom_length((const unsigned char *)d->text, d->text_len)};
        scan_lines((const unsigned char *)d->text, offset, d->nodes, d->count, &ls);
        set_line_col(offset, ls.last, ls.lines, line, column);
        return;
    }
    /* Last line starting at or before offset. */
    uint32_t lo = 0, hi = d->line_count;
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (d->line_starts[mid] <= offset)
            lo = mid;
        else
            hi = mid;
    }
    set_line_col(offset, d->line_starts[lo], lo + 1, line, column);
}

/* ------------------------------------------------------------------------
 * Nodes
 * ------------------------------------------------------------------------ */

/* Not fa_reserve: the node array is the document's memory, so it grows by
 * 1.5x (not 2x) to stay within the validator's memory budget, and its count
 * is a uint32_t (node indexes are 32-bit). */
static bool grow_nodes(parser *ps)
{
    uint64_t want = (uint64_t)ps->cap + ps->cap / 2 + 64;
    if (want > UINT32_MAX)
        want = UINT32_MAX;
    if (want <= ps->cap || want > SIZE_MAX / sizeof(fj_node))
        return false;
    fj_node *n = realloc(ps->nodes, (size_t)want * sizeof(fj_node));
    if (!n)
        return false;
    ps->nodes = n;
    ps->cap = (uint32_t)want;
    return true;
}

static inline bool push(parser *ps, fj_type type, uint8_t flags, uint32_t len, const unsigned char *at)
{
    if (ps->count == ps->cap && !grow_nodes(ps)) {
        fail_oom(ps, at);
        return false;
    }
    ps->nodes[ps->count++] = (fj_node){(uint8_t)type, flags, 0, len, 1, (uint32_t)OFFSET(ps, at)};
    return true;
}

/* ------------------------------------------------------------------------
 * Lexing
 * ------------------------------------------------------------------------ */

static inline unsigned char *skip_ws(unsigned char *p, const unsigned char *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

/* Bytes a string may contain verbatim: printable ASCII except '"' and '\\'. */
static inline bool plain_byte(unsigned char c)
{
    return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

/* First byte at or after p that is not plain (or end). */
static inline unsigned char *scan_plain(unsigned char *p, const unsigned char *end)
{
#ifdef FJ_USE_SSE2
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        /* Signed compare: bytes >= 0x80 are negative, so "< 0x20" also
         * catches non-ASCII, which needs UTF-8 validation. */
        __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
                                   _mm_cmplt_epi8(v, space));
        unsigned mask = (unsigned)_mm_movemask_epi8(hit);
        if (mask)
            return p + __builtin_ctz(mask);
        p += 16;
    }
#endif
    while (p < end && plain_byte(*p))
        p++;
    return p;
}

/* Length of the well-formed UTF-8 sequence at p (*p >= 0x80), or 0. */
static inline size_t utf8_sequence(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t avail = (size_t)(end - p);
    if (c < 0xC2) /* continuation byte, or overlong 2-byte form */
        return 0;
    if (c < 0xE0)
        return avail >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c < 0xF0) {
        unsigned lo = c == 0xE0 ? 0xA0 : 0x80; /* E0 80..9F would be overlong */
        unsigned hi = c == 0xED ? 0x9F : 0xBF; /* ED A0..BF would be a surrogate */
        return avail >= 3 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c < 0xF5) {
        unsigned lo = c == 0xF0 ? 0x90 : 0x80; /* F0 80..8F would be overlong */
        unsigned hi = c == 0xF4 ? 0x8F : 0xBF; /* F4 90.. would exceed U+10FFFF */
        return avail >= 4 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 && (p[3] & 0xC0) == 0x80 ? 4 : 0;
    }
    return 0;
}

static int hex_digit(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The 4 hex digits at p as a code unit, or -1. */
static long hex4(const unsigned char *p, const unsigned char *end)
{
    if (end - p < 4)
        return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int d = hex_digit(p[i]);
        if (d < 0)
            return -1;
        v = v << 4 | d;
    }
    return v;
}

static unsigned char *put_utf8(unsigned char *w, unsigned long cp)
{
    if (cp < 0x80) {
        *w++ = (unsigned char)cp;
    } else if (cp < 0x800) {
        *w++ = (unsigned char)(0xC0 | cp >> 6);
        *w++ = (unsigned char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *w++ = (unsigned char)(0xE0 | cp >> 12);
        *w++ = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        *w++ = (unsigned char)(0x80 | (cp & 0x3F));
    } else {
        *w++ = (unsigned char)(0xF0 | cp >> 18);
        *w++ = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
        *w++ = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        *w++ = (unsigned char)(0x80 | (cp & 0x3F));
    }
    return w;
}

/*
 * Decode the \u escape at r (r[0] == '\\', r[1] == 'u'), combining a
 * surrogate pair. Writes UTF-8 at *w; returns the byte after the escape(s).
 */
static unsigned char *decode_u_escape(parser *ps, unsigned char *r, const unsigned char *end, unsigned char **w,
                                      const unsigned char *quote)
{
    size_t at = OFFSET(ps, r), anchor = OFFSET(ps, quote);
    long hi = hex4(r + 2, end);
    if (hi < 0)
        return fail_anchored(ps, at, anchor, "expected 4 hex digits after \\u in string");
    unsigned long cp = (unsigned long)hi;
    r += 6;
    if (hi >= 0xDC00 && hi <= 0xDFFF)
        return fail_anchored(ps, at, anchor, "unpaired surrogate \\u%04lX in string", cp);
    if (hi >= 0xD800 && hi <= 0xDBFF) {
        long lo = end - r >= 6 && r[0] == '\\' && r[1] == 'u' ? hex4(r + 2, end) : -1;
        if (lo < 0xDC00 || lo > 0xDFFF)
            return fail_anchored(ps, at, anchor, "unpaired surrogate \\u%04lX in string", cp);
        cp = 0x10000 + ((cp - 0xD800) << 10) + ((unsigned long)lo - 0xDC00);
        r += 6;
    }
    *w = put_utf8(*w, cp);
    return r;
}

/* Decode the escape at r (r[0] == '\\') to *w; returns the byte after it. */
static unsigned char *decode_escape(parser *ps, unsigned char *r, const unsigned char *end, unsigned char **w,
                                    const unsigned char *quote)
{
    if (end - r < 2)
        return fail_anchored(ps, ps->len, OFFSET(ps, quote), "unterminated string, found end of input");
    unsigned char c;
    switch (r[1]) {
    case '"': c = '"'; break;
    case '\\': c = '\\'; break;
    case '/': c = '/'; break;
    case 'b': c = '\b'; break;
    case 'f': c = '\f'; break;
    case 'n': c = '\n'; break;
    case 'r': c = '\r'; break;
    case 't': c = '\t'; break;
    case 'u': return decode_u_escape(ps, r, end, w, quote);
    default: {
        char buf[16];
        return fail_anchored(ps, OFFSET(ps, r), OFFSET(ps, quote), "invalid escape '\\' followed by %s in string",
                             describe(ps, r + 1, buf));
    }
    }
    *(*w)++ = c;
    return r + 2;
}

/* Error for the non-plain, non-quote, non-backslash byte at r in a string. */
static void *fail_string_byte(parser *ps, const unsigned char *r, const unsigned char *quote)
{
    size_t at = OFFSET(ps, r), anchor = OFFSET(ps, quote);
    if (r >= ps->text + ps->len)
        return fail_anchored(ps, at, anchor, "unterminated string, found end of input");
    if (*r >= 0x80)
        return fail_anchored(ps, at, anchor, "invalid UTF-8 byte 0x%02X in string", *r);
    return fail_anchored(ps, at, anchor, "unescaped control character 0x%02X in string", *r);
}

/*
 * Slow path of parse_string, entered at the first backslash r: copy and
 * decode in place. w trails r because no escape decodes to more bytes than
 * it occupies. Returns the byte after the closing quote.
 */
static unsigned char *decode_string(parser *ps, unsigned char *quote, unsigned char *r, const unsigned char *end,
                                    uint32_t *len)
{
    unsigned char *w = r;
    for (;;) {
        unsigned char *run = scan_plain(r, end);
        if (run != r) {
            memmove(w, r, (size_t)(run - r));
            w += run - r;
            r = run;
        }
        if (r < end && *r == '"') {
            *len = (uint32_t)(w - quote - 1);
            return r + 1;
        }
        if (r < end && *r == '\\') {
            if (!(r = decode_escape(ps, r, end, &w, quote)))
                return NULL;
            continue;
        }
        size_t n = r < end && *r >= 0x80 ? utf8_sequence(r, end) : 0;
        if (!n)
            return fail_string_byte(ps, r, quote);
        memmove(w, r, n);
        w += n;
        r += n;
    }
}

/* Parse the string whose opening quote is at p; sets *len to its decoded length. */
static unsigned char *parse_string(parser *ps, unsigned char *p, const unsigned char *end, uint32_t *len)
{
    unsigned char *r = p + 1;
    for (;;) {
        r = scan_plain(r, end);
        if (r < end && *r == '"') {
            *len = (uint32_t)(r - p - 1);
            return r + 1;
        }
        if (r < end && *r == '\\')
            return decode_string(ps, p, r, end, len);
        size_t n = r < end && *r >= 0x80 ? utf8_sequence(r, end) : 0;
        if (!n)
            return fail_string_byte(ps, r, p);
        r += n;
    }
}

static inline bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static unsigned char *skip_digits(unsigned char *p, const unsigned char *end)
{
    while (p < end && is_digit(*p))
        p++;
    return p;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? ; the text is kept as is. */
static unsigned char *parse_number(parser *ps, unsigned char *p, const unsigned char *end)
{
    unsigned char *start = p;
    uint8_t flags = FJ_FLAG_NUMBER_INTEGRAL;
    if (*p == '-' && (++p == end || !is_digit(*p))) {
        if (p < end && *p == 'I')
            return fail_at(ps, p, "NaN and Infinity are not allowed in JSON");
        return fail_expected(ps, p, "expected a digit after '-'");
    }
    if (*p == '0') {
        if (++p < end && is_digit(*p))
            return fail_at(ps, p - 1, "leading zeros are not allowed in numbers");
    } else {
        p = skip_digits(p, end);
    }
    if (p < end && *p == '.') {
        flags = 0;
        if (++p == end || !is_digit(*p))
            return fail_expected(ps, p, "expected a digit after '.' in number");
        p = skip_digits(p, end);
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        flags = 0;
        if (++p < end && (*p == '+' || *p == '-'))
            p++;
        if (p == end || !is_digit(*p))
            return fail_expected(ps, p, "expected a digit in the exponent of number");
        p = skip_digits(p, end);
    }
    if (!push(ps, FJ_NUMBER, flags, (uint32_t)(p - start), start))
        return NULL;
    return p;
}

static unsigned char *parse_literal(parser *ps, unsigned char *p, const unsigned char *end, const char *word,
                                    fj_type type)
{
    size_t n = strlen(word);
    if ((size_t)(end - p) < n || memcmp(p, word, n) != 0)
        return fail_at(ps, p, "invalid literal, expected '%s'", word);
    if (!push(ps, type, 0, 0, p))
        return NULL;
    return p + n;
}

/* A string, number or literal at p. */
static unsigned char *parse_scalar(parser *ps, unsigned char *p, const unsigned char *end)
{
    if (p == end)
        return fail_value(ps, p);
    switch (*p) {
    case '"': {
        uint32_t len;
        unsigned char *q = parse_string(ps, p, end, &len);
        if (!q || !push(ps, FJ_STRING, 0, len, p))
            return NULL;
        return q;
    }
    case 't': return parse_literal(ps, p, end, "true", FJ_TRUE);
    case 'f': return parse_literal(ps, p, end, "false", FJ_FALSE);
    case 'n': return parse_literal(ps, p, end, "null", FJ_NULL);
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9': return parse_number(ps, p, end);
    default: return fail_value(ps, p);
    }
}

/* ------------------------------------------------------------------------
 * Duplicate keys
 * ------------------------------------------------------------------------ */

static inline bool same_key(const parser *ps, uint32_t a, uint32_t b)
{
    const fj_node *x = &ps->nodes[a], *y = &ps->nodes[b];
    return x->len == y->len && memcmp(ps->text + x->pos + 1, ps->text + y->pos + 1, x->len) == 0;
}

/* Flag key node `key` if an earlier key of object `obj` equals it. */
static void check_key_linear(parser *ps, uint32_t obj, uint32_t key)
{
    /* Earlier members are complete, so their value sizes are final. */
    for (uint32_t k = obj + 1; k < key; k += 1 + ps->nodes[k + 1].size) {
        if (same_key(ps, k, key)) {
            ps->nodes[key].flags |= FJ_FLAG_DUPLICATE_KEY;
            return;
        }
    }
}

/* Order for grouping equal keys: by length, then bytes. */
static int key_order(const parser *ps, uint32_t a, uint32_t b)
{
    const fj_node *x = &ps->nodes[a], *y = &ps->nodes[b];
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return memcmp(ps->text + x->pos + 1, ps->text + y->pos + 1, x->len);
}

/* Stable bottom-up merge sort of n key indices; returns a or tmp, whichever holds the result. */
static uint32_t *sort_keys(const parser *ps, uint32_t *a, uint32_t *tmp, size_t n)
{
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = mid + width < n ? mid + width : n;
            size_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi)
                tmp[o++] = key_order(ps, a[j], a[i]) < 0 ? a[j++] : a[i++];
            while (i < mid)
                tmp[o++] = a[i++];
            while (j < hi)
                tmp[o++] = a[j++];
        }
        uint32_t *t = a;
        a = tmp;
        tmp = t;
    }
    return a;
}

/* Flag all later duplicates among the keys of large object obj. */
static bool check_keys_sorted(parser *ps, uint32_t obj, const unsigned char *at)
{
    uint32_t n = ps->nodes[obj].len;
    /* the keys and the merge sort's second half */
    if (!fa_reserve(&ps->scratch, &ps->scratch_cap, (size_t)n * 2, sizeof *ps->scratch)) {
        fail_oom(ps, at);
        return false;
    }
    uint32_t *keys = ps->scratch, k = obj + 1;
    for (uint32_t i = 0; i < n; i++, k += 1 + ps->nodes[k + 1].size)
        keys[i] = k;
    keys = sort_keys(ps, keys, ps->scratch + n, n);
    /* Stable sort: within a run of equal keys, document order is kept, so
     * all but the first of each run are the later duplicates. */
    for (uint32_t i = 1; i < n; i++)
        if (same_key(ps, keys[i - 1], keys[i]))
            ps->nodes[keys[i]].flags |= FJ_FLAG_DUPLICATE_KEY;
    return true;
}

/* ------------------------------------------------------------------------
 * Structure
 * ------------------------------------------------------------------------ */

static bool open_container(parser *ps, unsigned char *p)
{
    if (ps->depth == ps->max_depth) {
        fail_at(ps, p, "nesting deeper than %u levels", ps->max_depth);
        ps->err->limit = true;
        return false;
    }
    if (!push(ps, *p == '{' ? FJ_OBJECT : FJ_ARRAY, 0, 0, p))
        return false;
    ps->stack[ps->depth++] = ps->count - 1;
    return true;
}

/* p is the closing bracket. */
static bool close_container(parser *ps, const unsigned char *p)
{
    uint32_t idx = ps->stack[--ps->depth];
    fj_node *n = &ps->nodes[idx];
    n->size = ps->count - idx;
    if (n->type == FJ_OBJECT && n->len > KEY_SCAN_LIMIT)
        return check_keys_sorted(ps, idx, p);
    return true;
}

/* Member key at p, then ':'; returns where the member's value starts. */
static unsigned char *parse_key(parser *ps, unsigned char *p, const unsigned char *end)
{
    if (p == end || *p != '"') {
        if (p < end && *p == '}')
            return fail_at(ps, p, "trailing comma before '}'");
        if (p < end && *p == '\'')
            return fail_at(ps, p, "strings must use double quotes, found '''");
        return fail_expected(ps, p, "expected '\"' to start an object key");
    }
    uint32_t len, obj = ps->stack[ps->depth - 1];
    unsigned char *q = parse_string(ps, p, end, &len);
    if (!q || !push(ps, FJ_STRING, 0, len, p))
        return NULL;
    if (ps->nodes[obj].len < KEY_SCAN_LIMIT)
        check_key_linear(ps, obj, ps->count - 1);
    q = skip_ws(q, end);
    if (q == end || *q != ':')
        return fail_expected(ps, q, "expected ':' after object key");
    return skip_ws(q + 1, end);
}

/*
 * A value just ended at p. Consume separators and closing brackets until the
 * next value starts (returned, with *done false) or the top-level value is
 * complete (*done true).
 */
static unsigned char *after_value(parser *ps, unsigned char *p, const unsigned char *end, bool *done)
{
    for (;;) {
        if (ps->depth == 0) {
            *done = true;
            return p;
        }
        p = skip_ws(p, end);
        fj_node *top = &ps->nodes[ps->stack[ps->depth - 1]];
        bool object = top->type == FJ_OBJECT;
        top->len++; /* the member that just ended */
        if (p < end && *p == ',') {
            p = skip_ws(p + 1, end);
            if (object)
                return parse_key(ps, p, end);
            if (p < end && *p == ']')
                return fail_at(ps, p, "trailing comma before ']'");
            return p;
        }
        if (p < end && *p == (object ? '}' : ']')) {
            if (!close_container(ps, p))
                return NULL;
            p++;
            continue;
        }
        return fail_expected(ps, p,
                             object ? "expected ',' or '}' after object member"
                                    : "expected ',' or ']' after array element");
    }
}

static bool parse_document(parser *ps, unsigned char *p)
{
    const unsigned char *end = ps->text + ps->len;
    p = skip_ws(p, end);
    for (;;) {
        if (p < end && (*p == '{' || *p == '[')) {
            char close = *p == '{' ? '}' : ']';
            if (!open_container(ps, p))
                return false;
            p = skip_ws(p + 1, end);
            if (p == end || *p != close) {
                if (close == '}' && !(p = parse_key(ps, p, end)))
                    return false;
                continue; /* first member's value starts at p */
            }
            if (!close_container(ps, p))
                return false;
            p++;
        } else if (!(p = parse_scalar(ps, p, end))) {
            return false;
        }
        bool done = false;
        if (!(p = after_value(ps, p, end, &done)))
            return false;
        if (done)
            break;
    }
    p = skip_ws(p, end);
    if (p != end) {
        fail_expected(ps, p, "expected end of input after the top-level value");
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------------
 * API
 * ------------------------------------------------------------------------ */

fj_limits fj_default_limits(void)
{
    return (fj_limits){FJ_DEFAULT_MAX_BYTES, FJ_DEFAULT_MAX_DEPTH};
}

/* Zero fields mean "default", so callers can set just one limit. */
static fj_limits effective_limits(const fj_limits *limits)
{
    fj_limits l = fj_default_limits();
    if (limits && limits->max_bytes)
        l.max_bytes = limits->max_bytes;
    if (limits && limits->max_depth)
        l.max_depth = limits->max_depth;
    return l;
}

static bool refuse_size(fj_error *err, const char *fmt, size_t limit)
{
    char size[32];
    format_size(limit, size, sizeof size);
    snprintf(err->message, sizeof err->message, fmt, size);
    err->limit = true;
    err->offset = 0;
    err->line = 1;
    err->column = 1;
    return false;
}

bool fj_parse(char *text, size_t len, const fj_limits *limits, fj_doc *doc, fj_error *err)
{
    fj_error scratch_err;
    if (!err)
        err = &scratch_err;
    memset(doc, 0, sizeof *doc);
    memset(err, 0, sizeof *err);
    static char no_text[1];
    if (!text) { /* treat as empty; keeps pointer arithmetic off NULL */
        text = no_text;
        len = 0;
    }
    fj_limits lim = effective_limits(limits);
    if (len > lim.max_bytes)
        return refuse_size(err, "document larger than the %s limit", lim.max_bytes);
    if (len > UINT32_MAX) /* offsets are 32-bit */
        return refuse_size(err, "document larger than the %s limit", (size_t)4 << 30);

    parser ps = {.text = (unsigned char *)text, .len = len, .err = err, .max_depth = lim.max_depth};
    /* Nesting cannot exceed the byte count, which bounds the stack. */
    uint32_t local_stack[LOCAL_STACK];
    size_t stack_size = lim.max_depth < len ? lim.max_depth : len;
    ps.stack = stack_size <= LOCAL_STACK ? local_stack : malloc(stack_size * sizeof *ps.stack);
    ps.cap = (uint32_t)(len / 16 + 16);
    ps.nodes = malloc((size_t)ps.cap * sizeof *ps.nodes);

    unsigned char *start = ps.text + bom_length(ps.text, len);
    bool ok = false;
    if (ps.stack && ps.nodes)
        ok = parse_document(&ps, start);
    else
        fail_oom(&ps, start);
    if (ok) {
        doc->text = text;
        doc->text_len = len;
        doc->nodes = ps.nodes;
        doc->count = ps.count;
        doc->capacity = ps.cap;
    } else {
        locate_error(&ps);
        free(ps.nodes);
    }
    if (ps.stack != local_stack)
        free(ps.stack);
    free(ps.scratch);
    return ok;
}

void fj_doc_free(fj_doc *doc)
{
    if (!doc)
        return;
    free(doc->nodes);
    free(doc->line_starts);
    memset(doc, 0, sizeof *doc);
}

bool fj_str_eq(const fj_doc *d, uint32_t i, const char *s)
{
    const fj_node *n = &d->nodes[i];
    size_t len = strlen(s);
    return n->type == FJ_STRING && n->len == len && memcmp(fj_str(d, i), s, len) == 0;
}

uint32_t fj_get(const fj_doc *d, uint32_t obj, const char *key)
{
    if (obj >= d->count || d->nodes[obj].type != FJ_OBJECT)
        return UINT32_MAX;
    uint32_t k = obj + 1;
    for (uint32_t m = 0; m < d->nodes[obj].len; m++) {
        if (fj_str_eq(d, k, key))
            return k + 1;
        k = fj_next(d, k + 1);
    }
    return UINT32_MAX;
}

uint32_t fj_get_n(const fj_doc *d, uint32_t obj, const char *key, size_t len)
{
    if (obj >= d->count || d->nodes[obj].type != FJ_OBJECT)
        return UINT32_MAX;
    uint32_t k = obj + 1;
    for (uint32_t m = 0; m < d->nodes[obj].len; m++, k = fj_next(d, k + 1))
        if (d->nodes[k].len == len && !memcmp(fj_str(d, k), key, len))
            return k + 1;
    return UINT32_MAX;
}

static bool text_equal(const fj_doc *a, uint32_t na, const fj_doc *b, uint32_t nb)
{
    return a->nodes[na].len == b->nodes[nb].len && !memcmp(fj_str(a, na), fj_str(b, nb), a->nodes[na].len);
}

static bool numbers_equal(const fj_doc *a, uint32_t na, const fj_doc *b, uint32_t nb, fj_numbers numbers)
{
    if (text_equal(a, na, b, nb))
        return true;
    char x[64], y[64];
    size_t xl = a->nodes[na].len, yl = b->nodes[nb].len;
    if (numbers == FJ_NUMBERS_BY_TEXT || xl >= sizeof x || yl >= sizeof y)
        return false;
    memcpy(x, fj_str(a, na), xl);
    x[xl] = '\0';
    memcpy(y, fj_str(b, nb), yl);
    y[yl] = '\0';
    return strtold(x, NULL) == strtold(y, NULL);
}

bool fj_equal(const fj_doc *a, uint32_t na, const fj_doc *b, uint32_t nb, fj_numbers numbers)
{
    const fj_node *x = &a->nodes[na], *y = &b->nodes[nb];
    if (x->type != y->type || ((x->type == FJ_ARRAY || x->type == FJ_OBJECT) && x->len != y->len))
        return false;
    switch (x->type) {
    case FJ_NUMBER: return numbers_equal(a, na, b, nb, numbers);
    case FJ_STRING: return text_equal(a, na, b, nb);
    case FJ_ARRAY:
        for (uint32_t i = 0, ia = na + 1, ib = nb + 1; i < x->len; i++, ia = fj_next(a, ia), ib = fj_next(b, ib))
            if (!fj_equal(a, ia, b, ib, numbers))
                return false;
        return true;
    case FJ_OBJECT: {
        uint32_t k = na + 1;
        for (uint32_t m = 0; m < x->len; m++, k = fj_next(a, k + 1)) {
            uint32_t other = fj_get_n(b, nb, fj_str(a, k), a->nodes[k].len);
            if (other == UINT32_MAX || !fj_equal(a, k + 1, b, other, numbers))
                return false;
        }
        return true;
    }
    default: return true; /* null, true, false: the type says it all */
    }
}

const char *fj_type_name(fj_type t)
{
    switch (t) {
    case FJ_NULL: return "null";
    case FJ_FALSE:
    case FJ_TRUE: return "boolean";
    case FJ_NUMBER: return "number";
    case FJ_STRING: return "string";
    case FJ_ARRAY: return "array";
    case FJ_OBJECT: return "object";
    }
    return "unknown";
}
