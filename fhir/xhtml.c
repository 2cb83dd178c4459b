/*
 * fhir/xhtml.c — the Narrative.div checker (see xhtml.h).
 *
 * A small XML tokenizer driven by one loop: text, `<!--`, `<![CDATA[`,
 * `<!DOCTYPE`, `<?`, end tags and start tags. Start tags push onto a fixed
 * stack of names (spans into the input), end tags must match the top.
 * Fragment references ("#id") are kept and resolved at the end, when every
 * id of the narrative has been seen.
 *
 * It runs on every div of every request (a 50 KB handover document is
 * mostly narrative), so the hot paths avoid per-byte and per-name work:
 *   - text and attribute values are skipped 8 bytes at a time up to the
 *     next byte that needs a look ('<', '&' or a control character);
 *   - every name txt-1 knows (elements and attributes) sits in one hash
 *     table, built once, whose entry says all the checks need: allowed
 *     element, block, which elements an attribute is allowed on, URL;
 *   - references are decoded only for the attributes whose decoded value
 *     is looked at (style and the URL attributes);
 *   - the parser's large arrays are not cleared per call (counts guard them).
 */
#include "fhir/xhtml.h"

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XHTML_NS "http://www.w3.org/1999/xhtml"
#define MAX_IDS 512
#define MAX_REFS 64
#define MAX_ATTRS 32
#define DECODE_CAP 256 /* enough of an attribute value to see its URL scheme */

#define COUNT(a) (sizeof(a) / sizeof *(a))

typedef struct span {
    const char *s;
    size_t len;
} span;

typedef struct frag_ref {
    span id;
    bool image;
} frag_ref;

/* An open element: its name (for the end tag to match) and its kind (EL_*, for the checks). */
typedef struct open_element {
    span name;
    unsigned kind;
} open_element;

typedef struct parser {
    const char *s;
    size_t len, pos;
    const fx_options *opts;
    fx_report_fn report;
    void *report_ctx;
    size_t errors, reports;
    bool stop; /* not well-formed: nothing after this point can be trusted */
    unsigned max_depth, depth, in_para;
    bool has_content, root_seen, root_closed;
    size_t id_count, ref_count;
    /* the arrays last: fx_check clears only what comes before them (the counts say what is in use) */
    open_element stack[FX_MAX_DEPTH_CAP];
    span ids[MAX_IDS];
    frag_ref refs[MAX_REFS];
} parser;

/* ---- the names txt-1 knows -------------------------------------------------------- */

/* The elements the checks tell apart; ON(kind) is their bit in the masks of attributes. */
enum { EL_OTHER, EL_A, EL_IMG, EL_MAP, EL_AREA, EL_BLOCKQUOTE, EL_Q, EL_TABLE, EL_PRE, EL_TD, EL_DIV, EL_P };
#define ON(kind) (1u << (kind))

enum {
    W_ELEMENT = 1 << 0,   /* txt-1 allows this element */
    W_BLOCK = 1 << 1,     /* a block element: not inside a <p> */
    W_ACTIVE = 1 << 2,    /* an element that runs or embeds content: the message says so */
    W_GLOBAL = 1 << 3,    /* an attribute any allowed element may carry */
    W_STYLE = 1 << 4,     /* its decoded value must not carry script */
    W_ID = 1 << 5,        /* an id "#..." may name */
    W_NAME = 1 << 6,      /* an id too, on <a> */
    W_XMLNS = 1 << 7,     /* its value must be the XHTML namespace */
    W_XML_SPACE = 1 << 8, /* without effect in narrative */
    W_IMAGE_URL = 1 << 9  /* as a URL, it loads an image (img src) */
};

typedef struct word {
    const char *name;
    uint8_t len, kind; /* kind: EL_* as an element */
    uint16_t flags;    /* W_* */
    uint16_t allowed;  /* as an attribute: ON(kind) of the elements it is allowed on (besides W_GLOBAL) */
    uint16_t url;      /* as an attribute: ON(kind) of the elements where its value is a URL to follow or load */
} word;

#define W(lit) lit, sizeof(lit) - 1

/*
 * txt-1 as the HL7 validator lists it: the elements of HTML 4.0 chapters
 * 7-11 and 15, the attributes any of them may carry, the attributes allowed
 * on one element only, and which of those hold URLs. A name that is both an
 * element and an attribute (span, abbr, cite) is one entry.
 */
static const word words[] = {
    /* elements */
    {W("p"), EL_P, W_ELEMENT | W_BLOCK, 0, 0},
    {W("br"), 0, W_ELEMENT, 0, 0},
    {W("div"), EL_DIV, W_ELEMENT | W_BLOCK, 0, 0},
    {W("h1"), 0, W_ELEMENT, 0, 0},
    {W("h2"), 0, W_ELEMENT, 0, 0},
    {W("h3"), 0, W_ELEMENT, 0, 0},
    {W("h4"), 0, W_ELEMENT, 0, 0},
    {W("h5"), 0, W_ELEMENT, 0, 0},
    {W("h6"), 0, W_ELEMENT, 0, 0},
    {W("a"), EL_A, W_ELEMENT, 0, 0},
    {W("span"), 0, W_ELEMENT | W_GLOBAL, 0, 0},
    {W("b"), 0, W_ELEMENT, 0, 0},
    {W("em"), 0, W_ELEMENT, 0, 0},
    {W("i"), 0, W_ELEMENT, 0, 0},
    {W("strong"), 0, W_ELEMENT, 0, 0},
    {W("small"), 0, W_ELEMENT, 0, 0},
    {W("big"), 0, W_ELEMENT, 0, 0},
    {W("tt"), 0, W_ELEMENT, 0, 0},
    {W("dfn"), 0, W_ELEMENT, 0, 0},
    {W("q"), EL_Q, W_ELEMENT, 0, 0},
    {W("var"), 0, W_ELEMENT, 0, 0},
    {W("abbr"), 0, W_ELEMENT | W_GLOBAL, 0, 0},
    {W("acronym"), 0, W_ELEMENT, 0, 0},
    {W("cite"), 0, W_ELEMENT, ON(EL_BLOCKQUOTE) | ON(EL_Q), ON(EL_BLOCKQUOTE) | ON(EL_Q)},
    {W("blockquote"), EL_BLOCKQUOTE, W_ELEMENT | W_BLOCK, 0, 0},
    {W("hr"), 0, W_ELEMENT, 0, 0},
    {W("address"), 0, W_ELEMENT, 0, 0},
    {W("bdo"), 0, W_ELEMENT, 0, 0},
    {W("kbd"), 0, W_ELEMENT, 0, 0},
    {W("sub"), 0, W_ELEMENT, 0, 0},
    {W("sup"), 0, W_ELEMENT, 0, 0},
    {W("ul"), 0, W_ELEMENT | W_BLOCK, 0, 0},
    {W("ol"), 0, W_ELEMENT | W_BLOCK, 0, 0},
    {W("li"), 0, W_ELEMENT, 0, 0},
    {W("dl"), 0, W_ELEMENT, 0, 0},
    {W("dt"), 0, W_ELEMENT, 0, 0},
    {W("dd"), 0, W_ELEMENT, 0, 0},
    {W("pre"), EL_PRE, W_ELEMENT, 0, 0},
    {W("table"), EL_TABLE, W_ELEMENT | W_BLOCK, 0, 0},
    {W("caption"), 0, W_ELEMENT, 0, 0},
    {W("colgroup"), 0, W_ELEMENT, 0, 0},
    {W("col"), 0, W_ELEMENT, 0, 0},
    {W("thead"), 0, W_ELEMENT, 0, 0},
    {W("tr"), 0, W_ELEMENT, 0, 0},
    {W("tfoot"), 0, W_ELEMENT, 0, 0},
    {W("tbody"), 0, W_ELEMENT, 0, 0},
    {W("th"), 0, W_ELEMENT, 0, 0},
    {W("td"), EL_TD, W_ELEMENT, 0, 0},
    {W("code"), 0, W_ELEMENT, 0, 0},
    {W("samp"), 0, W_ELEMENT, 0, 0},
    {W("img"), EL_IMG, W_ELEMENT, 0, 0},
    {W("map"), EL_MAP, W_ELEMENT, 0, 0},
    {W("area"), EL_AREA, W_ELEMENT, 0, 0},
    /* elements outside txt-1 that the message names as active content */
    {W("script"), 0, W_ACTIVE, 0, 0},
    {W("iframe"), 0, W_ACTIVE, 0, 0},
    {W("object"), 0, W_ACTIVE, 0, 0},
    {W("embed"), 0, W_ACTIVE, 0, 0},
    /* attributes any allowed element may carry (span and abbr above) */
    {W("title"), 0, W_GLOBAL, 0, 0},
    {W("style"), 0, W_GLOBAL | W_STYLE, 0, 0},
    {W("class"), 0, W_GLOBAL, 0, 0},
    {W("id"), 0, W_GLOBAL | W_ID, 0, 0},
    {W("lang"), 0, W_GLOBAL, 0, 0},
    {W("xml:lang"), 0, W_GLOBAL, 0, 0},
    {W("dir"), 0, W_GLOBAL, 0, 0},
    {W("accesskey"), 0, W_GLOBAL, 0, 0},
    {W("tabindex"), 0, W_GLOBAL, 0, 0},
    {W("width"), 0, W_GLOBAL, 0, 0},
    {W("align"), 0, W_GLOBAL, 0, 0},
    {W("valign"), 0, W_GLOBAL, 0, 0},
    {W("char"), 0, W_GLOBAL, 0, 0},
    {W("charoff"), 0, W_GLOBAL, 0, 0},
    {W("axis"), 0, W_GLOBAL, 0, 0},
    {W("headers"), 0, W_GLOBAL, 0, 0},
    {W("scope"), 0, W_GLOBAL, 0, 0},
    {W("rowspan"), 0, W_GLOBAL, 0, 0},
    {W("colspan"), 0, W_GLOBAL, 0, 0},
    /* attributes allowed on some elements only */
    {W("href"), 0, 0, ON(EL_A) | ON(EL_AREA), ON(EL_A) | ON(EL_AREA)},
    {W("name"), 0, W_NAME, ON(EL_A) | ON(EL_MAP), 0},
    {W("charset"), 0, 0, ON(EL_A), 0},
    {W("type"), 0, 0, ON(EL_A), 0},
    {W("hreflang"), 0, 0, ON(EL_A), 0},
    {W("rel"), 0, 0, ON(EL_A), 0},
    {W("rev"), 0, 0, ON(EL_A), 0},
    {W("shape"), 0, 0, ON(EL_A) | ON(EL_AREA), 0},
    {W("coords"), 0, 0, ON(EL_A) | ON(EL_AREA), 0},
    {W("src"), 0, W_IMAGE_URL, ON(EL_IMG), ON(EL_IMG)},
    {W("border"), 0, 0, ON(EL_IMG) | ON(EL_TABLE), 0},
    {W("alt"), 0, 0, ON(EL_IMG) | ON(EL_AREA), 0},
    {W("longdesc"), 0, 0, ON(EL_IMG), ON(EL_IMG)},
    {W("height"), 0, 0, ON(EL_IMG), 0},
    {W("usemap"), 0, 0, ON(EL_IMG), 0},
    {W("ismap"), 0, 0, ON(EL_IMG), 0},
    {W("nohref"), 0, 0, ON(EL_AREA), 0},
    {W("summary"), 0, 0, ON(EL_TABLE), 0},
    {W("frame"), 0, 0, ON(EL_TABLE), 0},
    {W("rules"), 0, 0, ON(EL_TABLE), 0},
    {W("cellspacing"), 0, 0, ON(EL_TABLE), 0},
    {W("cellpadding"), 0, 0, ON(EL_TABLE), 0},
    {W("space"), 0, 0, ON(EL_PRE), 0},
    {W("nowrap"), 0, 0, ON(EL_TD), 0},
    {W("xmlns"), 0, W_XMLNS, ON(EL_DIV), 0},
    {W("xml:space"), 0, W_XML_SPACE, 0, 0},
};

#define SLOTS 256        /* a power of two, well over twice the words: probes stay short */
#define MAX_WORD_LEN 11u /* "cellspacing": longer names are not looked up */
_Static_assert(COUNT(words) * 2 < SLOTS, "the slots hold word indexes + 1 in a byte, and must stay sparse");
_Static_assert(EL_P < 16, "ON(kind) must fit the 16-bit masks of a word");

/* Byte classes for names and text. */
enum {
    C_NAME_START = 1, /* may start an XML name (ASCII letters, '_', ':', and any non-ASCII byte) */
    C_NAME = 2,       /* may continue one (also digits, '-', '.') */
    C_SPACE = 4,      /* XML whitespace */
    C_STOP = 8        /* text stops here for a look: '<', '&', a control character (tab, LF, CR included) */
};

static uint8_t word_slots[SLOTS]; /* index into words + 1; 0 = empty */
static uint8_t char_class[256];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

/* Constants picked so that the 102 words collide only 8 times in 256 slots. */
static unsigned word_hash(const char *s, size_t len)
{
    return ((unsigned char)s[0] * 24u + (unsigned char)s[len - 1] * 20u + (unsigned char)s[len / 2] * 5u +
            (unsigned)len) &
           (SLOTS - 1);
}

static void build_tables(void)
{
    for (size_t i = 0; i < COUNT(words); i++) {
        unsigned h = word_hash(words[i].name, words[i].len);
        while (word_slots[h])
            h = (h + 1) & (SLOTS - 1);
        word_slots[h] = (uint8_t)(i + 1);
    }
    for (unsigned c = 0; c < 256; c++) {
        bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        bool start = letter || c == '_' || c == ':' || c >= 0x80;
        bool space = c == ' ' || c == '\t' || c == '\n' || c == '\r';
        char_class[c] = (uint8_t)((start ? C_NAME_START | C_NAME : 0) |
                                  ((c >= '0' && c <= '9') || c == '-' || c == '.' ? C_NAME : 0) |
                                  (space ? C_SPACE : 0) | (c < 0x20 || c == '<' || c == '&' ? C_STOP : 0));
    }
}

/* a[0..n) == b[0..n), for the short names compared per tag: a call to memcmp costs more than the loop */
static bool same_bytes(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return false;
    return true;
}

/* The entry of a name, or NULL when txt-1 does not know it (names are case-sensitive: <P> is unknown). */
static const word *lookup(span x)
{
    if (!x.len || x.len > MAX_WORD_LEN)
        return NULL;
    for (unsigned h = word_hash(x.s, x.len);; h = (h + 1) & (SLOTS - 1)) {
        unsigned slot = word_slots[h];
        if (!slot)
            return NULL;
        const word *w = &words[slot - 1];
        if (w->len == x.len && same_bytes(w->name, x.s, x.len))
            return w;
    }
}

static bool span_eq(span a, span b)
{
    return a.len == b.len && same_bytes(a.s, b.s, a.len);
}

/* ---- reporting -------------------------------------------------------------------- */

static void report(parser *p, oo_severity sev, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void report(parser *p, oo_severity sev, const char *code, const char *fmt, ...)
{
    if (sev <= OO_ERROR)
        p->errors++;
    if (p->reports++ >= FX_MAX_REPORTS || !p->report)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->report(p->report_ctx, sev, code, msg);
}

/* A structural error: report it and stop reading (positions are in bytes into the div). */
static void fail(parser *p, const char *what)
{
    report(p, OO_ERROR, OO_STRUCTURE, "the narrative is not well-formed XHTML: %s (at byte %zu of the div)", what,
           p->pos);
    p->stop = true;
}

/* ---- bytes ------------------------------------------------------------------------ */

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void skip_space(parser *p)
{
    while (p->pos < p->len && (char_class[(unsigned char)p->s[p->pos]] & C_SPACE))
        p->pos++;
}

/* Skip past `end`; false (and not well-formed) when it never comes. */
static bool skip_past(parser *p, const char *end, const char *what)
{
    size_t n = strlen(end);
    for (const char *c = p->s + p->pos, *last = p->s + p->len; (size_t)(last - c) >= n; c++) {
        if (!(c = memchr(c, end[0], (size_t)(last - c))) || (size_t)(last - c) < n)
            break;
        if (!memcmp(c, end, n)) {
            p->pos = (size_t)(c - p->s) + n;
            return true;
        }
    }
    fail(p, what);
    return false;
}

static span read_name(parser *p)
{
    span n = {p->s + p->pos, 0};
    if (p->pos < p->len && (char_class[(unsigned char)p->s[p->pos]] & C_NAME_START))
        while (p->pos < p->len && (char_class[(unsigned char)p->s[p->pos]] & C_NAME))
            p->pos++;
    n.len = (size_t)(p->s + p->pos - n.s);
    return n;
}

#define ONES 0x0101010101010101u
#define HIGHS 0x8080808080808080u

/*
 * The high bit of each byte of w below `below` (at most 0x80). Only a
 * byte that is below borrows from the next one, so the lowest bit set
 * is exact; bits above it may be false (the caller wants the first).
 */
static uint64_t bytes_below(uint64_t w, unsigned below)
{
    return (w - ONES * below) & ~w & HIGHS;
}

/* The first byte of s[i..n) that text cannot pass over unlooked (C_STOP) or that is `also`, or n. */
static size_t skip_plain(const char *s, size_t i, size_t n, char also)
{
    for (; n - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        uint64_t stop = bytes_below(w, 0x20) | bytes_below(w ^ (ONES * '<'), 1) | bytes_below(w ^ (ONES * '&'), 1) |
                        bytes_below(w ^ (ONES * (unsigned char)also), 1);
        if (stop) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            return i + (size_t)__builtin_ctzll(stop) / 8;
#else
            break; /* the byte loop below finds it within 8 bytes */
#endif
        }
    }
    while (i < n && !(char_class[(unsigned char)s[i]] & C_STOP) && s[i] != also)
        i++;
    return i;
}

static bool xml_char(uint32_t c)
{
    return c == 0x9 || c == 0xA || c == 0xD || (c >= 0x20 && c <= 0xD7FF) || (c >= 0xE000 && c <= 0xFFFD) ||
           (c >= 0x10000 && c <= 0x10FFFF);
}

/*
 * An entity or character reference starting at s[0] == '&', within s[0..n).
 * Returns its length (through ';') and stores the character it stands for
 * (only ASCII matters to the callers), or 0 when it is not one XML defines.
 */
static size_t read_reference(const char *s, size_t n, uint32_t *out)
{
    static const struct {
        const char *name;
        char ch;
    } xml_entities[] = {{"lt;", '<'}, {"gt;", '>'}, {"amp;", '&'}, {"quot;", '"'}, {"apos;", '\''}};
    for (size_t i = 0; i < COUNT(xml_entities); i++) {
        size_t k = strlen(xml_entities[i].name);
        if (n > k && !memcmp(s + 1, xml_entities[i].name, k)) {
            *out = (unsigned char)xml_entities[i].ch;
            return k + 1;
        }
    }
    if (n < 4 || s[1] != '#')
        return 0;
    bool hex = s[2] == 'x';
    size_t i = hex ? 3 : 2, digits = 0;
    uint32_t v = 0;
    for (; i < n && s[i] != ';' && digits < 8; i++, digits++) {
        char c = s[i];
        int d = (c >= '0' && c <= '9')          ? c - '0'
                : hex && (c >= 'a' && c <= 'f') ? c - 'a' + 10
                : hex && (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                                : -1;
        if (d < 0)
            return 0;
        v = v * (hex ? 16u : 10u) + (uint32_t)d;
    }
    if (!digits || i >= n || s[i] != ';' || !xml_char(v))
        return 0;
    *out = v;
    return i + 1;
}

static void bad_reference(parser *p, const char *s, size_t n)
{
    size_t show = 1;
    while (show < n && show < 40 && s[show - 1] != ';' && s[show] != '<' && s[show] != ' ')
        show++;
    report(p, OO_ERROR, OO_INVALID,
           "'%.*s' is not an entity XHTML defines (only &lt; &gt; &amp; &quot; &apos; and character references)",
           (int)show, s);
}

/*
 * Text or an attribute value from s[0]: references must be defined,
 * characters XML ones; *non_space (when not NULL) is set by any character
 * that is not whitespace. Stops at the first '<' (where a text run ends; a
 * value never holds one) or at n, and returns where. A reference is read
 * within s[0..n) even in text: none contains '<', so it ends there as it
 * would at the end of the run.
 */
static size_t check_chars(parser *p, const char *s, size_t n, bool *non_space)
{
    size_t i = 0;
    for (;;) {
        size_t plain = skip_plain(s, i, n, '<');
        for (; non_space && !*non_space && i < plain; i++) /* a plain byte is space only when ' ' */
            *non_space = s[i] != ' ';
        i = plain;
        if (i >= n || s[i] == '<')
            return i;
        unsigned char c = (unsigned char)s[i];
        if (c == '&') {
            uint32_t ch;
            size_t k = read_reference(s + i, n - i, &ch);
            if (!k) {
                bad_reference(p, s + i, n - i);
                i++;
                continue;
            }
            if (non_space && !is_space((char)ch))
                *non_space = true;
            i += k;
        } else {
            if (!is_space((char)c))
                report(p, OO_ERROR, OO_INVALID, "control character 0x%02x is not allowed in XHTML", c);
            i++;
        }
    }
}

/* The value with references decoded and tab/CR/LF dropped (browsers drop them inside URLs), up to cap bytes. */
/*
 * The value with its references decoded and tabs and line breaks dropped (browsers drop them from URLs),
 * at most cap bytes. skip_leading: leading spaces and controls, as browsers skip them before a URL's
 * scheme, are left out before the cap counts, so no amount of them pushes a scheme out of sight.
 */
static size_t decode_value(span v, char *out, size_t cap, bool skip_leading)
{
    size_t o = 0;
    for (size_t i = 0; i < v.len && o < cap; i++) {
        char c = v.s[i];
        if (c == '&') {
            uint32_t ch;
            size_t k = read_reference(v.s + i, v.len - i, &ch);
            if (k) {
                c = ch < 0x80 ? (char)ch : '?';
                i += k - 1;
            }
        }
        if (c == '\t' || c == '\n' || c == '\r' || (skip_leading && o == 0 && (unsigned char)c <= 0x20))
            continue;
        out[o++] = c;
    }
    return o;
}

/*
 * The start of a URL value, decoded (decode_value, leading spaces skipped), at most DECODE_CAP bytes: enough
 * to see its scheme. In buf, or in place when the value is plain (no reference, no control character: most
 * are), as decoding would only copy them.
 */
static span decoded_url(span v, bool plain, char *buf)
{
    if (!plain)
        return (span){buf, decode_value(v, buf, DECODE_CAP, true)};
    while (v.len && (unsigned char)v.s[0] <= 0x20)
        v.s++, v.len--;
    return (span){v.s, v.len < DECODE_CAP ? v.len : DECODE_CAP};
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool prefix_ci(const char *s, size_t n, const char *lit)
{
    size_t k = strlen(lit);
    if (n < k)
        return false;
    for (size_t i = 0; i < k; i++)
        if (lower(s[i]) != lit[i])
            return false;
    return true;
}

/* NULL when the URL is inert, else why not. */
static const char *url_problem(const char *u, size_t n, bool image)
{
    while (n && ((unsigned char)u[0] <= 0x20)) { /* browsers skip leading spaces and controls */
        u++;
        n--;
    }
    char first = n ? lower(u[0]) : 0;
    if (first != 'j' && first != 'v' && first != 'l' && first != 'd')
        return NULL; /* most URLs: none of the schemes below */
    if (prefix_ci(u, n, "javascript:") || prefix_ci(u, n, "vbscript:") || prefix_ci(u, n, "livescript:"))
        return "script URLs run code when followed";
    if (prefix_ci(u, n, "data:")) {
        u += 5;
        n -= 5;
        while (n && u[0] == ' ') { /* the spec's own pages write "data: image/png" */
            u++;
            n--;
        }
        bool raster = prefix_ci(u, n, "image/png") || prefix_ci(u, n, "image/gif") || prefix_ci(u, n, "image/jpeg") ||
                      prefix_ci(u, n, "image/jpg") || prefix_ci(u, n, "image/webp") || prefix_ci(u, n, "image/bmp");
        if (!image || !raster)
            return "data: URLs may carry active content (only inline raster images are allowed)";
    }
    return NULL;
}

/* Where in the decoded style script starts, or n when it does not. */
static size_t style_script(const char *d, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        /* the first two letters of the three below: styles are full of other e's and -'s */
        char c = lower(d[i]), c2 = lower(d[i + 1]);
        if (!(c == 'e' && c2 == 'x') && !(c == 'j' && c2 == 'a') && !(c == '-' && c2 == 'm'))
            continue;
        if (prefix_ci(d + i, n - i, "expression(") || prefix_ci(d + i, n - i, "javascript:") ||
            prefix_ci(d + i, n - i, "-moz-binding"))
            return i;
    }
    return n;
}

/* ---- attributes ------------------------------------------------------------------- */

static void note_fragment(parser *p, span v, bool image)
{
    if (v.len < 2 || v.s[0] != '#' || memchr(v.s, '&', v.len) || p->ref_count >= MAX_REFS)
        return;
    p->refs[p->ref_count++] = (frag_ref){{v.s + 1, v.len - 1}, image};
}

static void note_id(parser *p, span v)
{
    if (p->id_count < MAX_IDS)
        p->ids[p->id_count++] = v;
}

/* Is attribute `name` (entry w, NULL when unknown) allowed on an element of kind el_kind? */
static bool attribute_allowed(unsigned el_kind, const word *w, span name)
{
    if (w && (w->flags & W_GLOBAL))
        return true;
    if (name.len >= 5 && !memcmp(name.s, "xmlns", 5))
        return true; /* namespace declarations; their values are checked apart */
    return w && (w->allowed & ON(el_kind));
}

/*
 * style: no script in it (expression(), javascript:, -moz-binding), references decoded: all of it, as
 * script may come after any amount of harmless style. A long value with references is decoded on the heap.
 */
static void check_style(parser *p, span el, span value, bool plain)
{
    char buf[DECODE_CAP];
    char *heap = !plain && value.len > DECODE_CAP ? malloc(value.len) : NULL;
    if (!plain && value.len > DECODE_CAP && !heap) {
        report(p, OO_ERROR, OO_EXCEPTION, "the style of <%.*s> could not be checked (out of memory)", (int)el.len,
               el.s);
        return;
    }
    span d = plain  ? value
             : heap ? (span){heap, decode_value(value, heap, value.len, false)}
                    : (span){buf, decode_value(value, buf, DECODE_CAP, false)};
    size_t at = style_script(d.s, d.len);
    if (at < d.len)
        report(p, OO_ERROR, OO_INVALID, "the style of <%.*s> carries script ('%.*s')", (int)el.len, el.s,
               (int)(d.len - at > 20 ? 20 : d.len - at), d.s + at);
    free(heap);
}

/* A URL attribute: inert once decoded; a fragment ("#id") is noted to be resolved at the end. */
static void check_url(parser *p, span el, span name, span value, bool plain, bool image)
{
    char buf[DECODE_CAP];
    span d = decoded_url(value, plain, buf);
    const char *problem = url_problem(d.s, d.len, image);
    if (problem)
        report(p, OO_ERROR, OO_INVALID, "<%.*s %.*s=\"%.*s\">: %s", (int)el.len, el.s, (int)name.len, name.s,
               (int)(d.len > 60 ? 60 : d.len), d.s, problem);
    else
        note_fragment(p, value, image);
}

/*
 * One attribute of element el: allowed by txt-1, its value inert, its ids
 * and fragments noted. A plain value (read_value) has no character to check.
 */
static void check_attribute(parser *p, const open_element *el, span name, span value, bool plain)
{
    if (!plain)
        check_chars(p, value.s, value.len, NULL);
    span e = el->name;
    if (name.len > 2 && prefix_ci(name.s, name.len, "on")) {
        report(p, OO_ERROR, OO_INVARIANT,
               "txt-1: the event handler attribute '%.*s' on <%.*s> is active content, which narrative SHALL NOT "
               "contain",
               (int)name.len, name.s, (int)e.len, e.s);
        return;
    }
    const word *w = lookup(name);
    unsigned flags = w ? w->flags : 0;
    if (flags & W_XML_SPACE) {
        report(p, OO_INFORMATION, OO_INVALID, "xml:space on <%.*s> has no effect in narrative", (int)e.len, e.s);
        return;
    }
    if (!attribute_allowed(el->kind, w, name)) {
        report(p, OO_ERROR, OO_INVARIANT, "txt-1: the attribute '%.*s' is not allowed on <%.*s> in narrative",
               (int)(name.len > 60 ? 60 : name.len), name.s, (int)e.len, e.s);
        return;
    }
    if ((flags & W_XMLNS) && !span_eq(value, (span){XHTML_NS, sizeof XHTML_NS - 1}))
        report(p, OO_ERROR, OO_INVALID, "the namespace of <%.*s> is '%.*s'; narrative is XHTML (" XHTML_NS ")",
               (int)e.len, e.s, (int)(value.len > 80 ? 80 : value.len), value.s);
    if (flags & W_STYLE)
        check_style(p, e, value, plain);
    if ((flags & W_ID) || ((flags & W_NAME) && el->kind == EL_A))
        note_id(p, value);
    if (w && (w->url & ON(el->kind)))
        check_url(p, e, name, value, plain, flags & W_IMAGE_URL);
}

/* ---- markup ----------------------------------------------------------------------- */

/*
 * A quoted value from p->pos (just past the quote) to the closing quote,
 * which is skipped. One pass finds the quote, a '<' (not well-formed) and
 * whether the value is plain: no reference or control character for
 * check_chars to look at. Returns false when not well-formed.
 */
static bool read_value(parser *p, char quote, span *value, bool *plain)
{
    size_t i = p->pos;
    *plain = true;
    for (;; i++) {
        i = skip_plain(p->s, i, p->len, quote);
        if (i >= p->len) {
            fail(p, "an attribute value is not closed");
            return false;
        }
        if (p->s[i] == quote)
            break;
        if (p->s[i] == '<') {
            const char *end = memchr(p->s + i, quote, p->len - i);
            if (!end) {
                fail(p, "an attribute value is not closed");
                return false;
            }
            p->pos = (size_t)(end - p->s) + 1; /* where the message says it is, as it always has */
            fail(p, "'<' inside an attribute value");
            return false;
        }
        *plain = false; /* '&' or a control character */
    }
    *value = (span){p->s + p->pos, i - p->pos};
    p->pos = i + 1;
    return true;
}

/* Attributes up to '>' or '/>'; returns false when the tag is not well-formed. */
static bool read_attributes(parser *p, const open_element *el, bool *self_closing, bool *has_xmlns)
{
    span seen[MAX_ATTRS];
    size_t seen_count = 0;
    for (;;) {
        size_t before = p->pos;
        skip_space(p);
        if (p->pos >= p->len) {
            fail(p, "the document ends inside a tag");
            return false;
        }
        char c = p->s[p->pos];
        if (c == '>' || (c == '/' && p->len - p->pos >= 2 && p->s[p->pos + 1] == '>')) {
            *self_closing = c == '/';
            p->pos += *self_closing ? 2 : 1;
            return true;
        }
        if (p->pos == before) {
            fail(p, "attributes are separated by whitespace");
            return false;
        }
        span name = read_name(p);
        if (!name.len) {
            fail(p, "expected an attribute name");
            return false;
        }
        skip_space(p);
        if (p->pos >= p->len || p->s[p->pos] != '=') {
            fail(p, "an attribute needs a quoted value");
            return false;
        }
        p->pos++;
        skip_space(p);
        char quote = p->pos < p->len ? p->s[p->pos] : 0;
        if (quote != '"' && quote != '\'') {
            fail(p, "attribute values are quoted");
            return false;
        }
        p->pos++;
        span value;
        bool plain;
        if (!read_value(p, quote, &value, &plain))
            return false;
        for (size_t i = 0; i < seen_count; i++)
            if (span_eq(seen[i], name)) {
                fail(p, "an attribute is repeated");
                return false;
            }
        if (seen_count < MAX_ATTRS)
            seen[seen_count++] = name;
        if (name.len == 5 && !memcmp(name.s, "xmlns", 5))
            *has_xmlns = true; /* a wrong value is check_attribute's to report */
        check_attribute(p, el, name, value, plain);
    }
}

/* The element's own checks: the root is a div, txt-1 allows it, no block in a paragraph. */
static void check_element(parser *p, span el, const word *w, bool is_root)
{
    unsigned kind = w ? w->kind : EL_OTHER, flags = w ? w->flags : 0;
    if (is_root && kind != EL_DIV)
        report(p, OO_ERROR, OO_INVALID, "the root of narrative is a <div>, found <%.*s>", (int)el.len, el.s);
    if (!(flags & W_ELEMENT)) { /* no allowed element has a prefix */
        if (memchr(el.s, ':', el.len))
            report(p, OO_ERROR, OO_INVALID, "<%.*s>: narrative elements are in the default XHTML namespace, unprefixed",
                   (int)el.len, el.s);
        else
            report(p, OO_ERROR, OO_INVARIANT, "txt-1: the element <%.*s> is not allowed in narrative%s",
                   (int)(el.len > 60 ? 60 : el.len), el.s, flags & W_ACTIVE ? " (active content)" : "");
    }
    if (p->in_para && (flags & W_BLOCK))
        report(p, OO_ERROR, OO_INVALID, "<%.*s> is a block element and cannot be inside a <p>", (int)el.len, el.s);
    if (kind == EL_IMG)
        p->has_content = true; /* an image is content (txt-2) */
}

static void start_tag(parser *p)
{
    p->pos++; /* '<' */
    span name = read_name(p);
    if (!name.len) {
        fail(p, "'<' does not start a tag (write &lt;)");
        return;
    }
    if (p->root_closed) {
        fail(p, "content after the root element");
        return;
    }
    bool is_root = !p->root_seen;
    p->root_seen = true;
    const word *w = lookup(name);
    open_element el = {name, w ? w->kind : EL_OTHER};
    check_element(p, name, w, is_root);
    bool self_closing = false, has_xmlns = false;
    if (!read_attributes(p, &el, &self_closing, &has_xmlns))
        return;
    if (is_root && !has_xmlns)
        report(p, OO_ERROR, OO_INVALID, "the narrative <div> must declare xmlns=\"" XHTML_NS "\"");
    if (self_closing) {
        p->root_closed = is_root;
        return;
    }
    if (p->depth >= p->max_depth) {
        report(p, OO_ERROR, OO_TOO_LONG, "the narrative nests elements deeper than %u levels", p->max_depth);
        p->stop = true;
        return;
    }
    p->stack[p->depth++] = el;
    p->in_para += el.kind == EL_P;
}

static void end_tag(parser *p)
{
    p->pos += 2; /* '</' */
    span el = read_name(p);
    skip_space(p);
    if (p->pos >= p->len || p->s[p->pos] != '>') {
        fail(p, "an end tag is not closed with '>'");
        return;
    }
    p->pos++;
    if (!p->depth || !span_eq(p->stack[p->depth - 1].name, el)) {
        fail(p, "an end tag does not match the open element");
        return;
    }
    p->depth--;
    p->in_para -= p->stack[p->depth].kind == EL_P;
    if (!p->depth)
        p->root_closed = true;
}

static void text(parser *p)
{
    bool non_space = false;
    size_t end = p->pos + check_chars(p, p->s + p->pos, p->len - p->pos, &non_space);
    if (non_space && !p->depth)
        fail(p, "text outside the root element");
    p->has_content |= non_space;
    p->pos = end;
}

/* Does the input continue with lit (of n bytes) at the current position? */
static bool at(const parser *p, const char *lit, size_t n)
{
    return p->len - p->pos >= n && !memcmp(p->s + p->pos, lit, n);
}

static void markup(parser *p)
{
    char next = p->len - p->pos >= 2 ? p->s[p->pos + 1] : 0;
    if (next == '!' && at(p, "<!--", 4)) {
        p->pos += 4;
        skip_past(p, "-->", "a comment is not closed");
    } else if (next == '!' && at(p, "<![CDATA[", 9)) {
        size_t start = p->pos += 9;
        if (skip_past(p, "]]>", "a CDATA section is not closed")) {
            for (size_t i = start; i < p->pos - 3; i++)
                p->has_content |= !is_space(p->s[i]);
        }
    } else if (next == '!') {
        report(p, OO_ERROR, OO_INVALID, "a DOCTYPE or other declaration is not allowed in narrative");
        p->stop = true; /* it may define entities: nothing after it reads the same */
    } else if (next == '?') {
        report(p, OO_ERROR, OO_INVALID, "processing instructions are not allowed in narrative");
        p->pos += 2;
        skip_past(p, "?>", "a processing instruction is not closed");
    } else if (next == '/') {
        end_tag(p);
    } else {
        start_tag(p);
    }
}

/* ---- fragments, and the whole ----------------------------------------------------- */

static bool id_known(const parser *p, span id)
{
    for (size_t i = 0; i < p->id_count; i++)
        if (span_eq(p->ids[i], id))
            return true;
    return p->opts && p->opts->local_id_exists && p->opts->local_id_exists(p->opts->id_ctx, id.s, id.len);
}

static void resolve_fragments(parser *p)
{
    for (size_t i = 0; i < p->ref_count; i++) {
        const frag_ref *r = &p->refs[i];
        if (id_known(p, r->id))
            continue;
        /* warnings: the reference checks only the scheme of img src, and Media-sound's "#11" names nothing */
        if (r->image)
            report(p, OO_WARNING, OO_INVALID,
                   "<img src=\"#%.*s\">: no contained resource or element has the id '%.*s' (an image in narrative is "
                   "a URL or a reference into the resource)",
                   (int)(r->id.len > 64 ? 64 : r->id.len), r->id.s, (int)(r->id.len > 64 ? 64 : r->id.len), r->id.s);
        else
            report(p, OO_WARNING, OO_INVALID, "href=\"#%.*s\": nothing in the narrative or the resource has this id",
                   (int)(r->id.len > 64 ? 64 : r->id.len), r->id.s);
    }
}

size_t fx_check(const char *s, size_t len, const fx_options *opts, fx_report_fn report_fn, void *report_ctx)
{
    pthread_once(&tables_once, build_tables);
    parser p;
    memset(&p, 0, offsetof(parser, stack)); /* the arrays (14 KB) are read only below their counts */
    p.s = s;
    p.len = s ? len : 0;
    p.opts = opts;
    p.report = report_fn;
    p.report_ctx = report_ctx;
    size_t max_bytes = opts && opts->max_bytes ? opts->max_bytes : FX_DEFAULT_MAX_BYTES;
    p.max_depth = opts && opts->max_depth ? opts->max_depth : FX_DEFAULT_MAX_DEPTH;
    if (p.max_depth > FX_MAX_DEPTH_CAP)
        p.max_depth = FX_MAX_DEPTH_CAP;
    if (p.len > max_bytes) {
        report(&p, OO_ERROR, OO_TOO_LONG, "the narrative is %zu bytes; at most %zu are checked", p.len, max_bytes);
        return p.errors;
    }
    while (!p.stop && p.pos < p.len) {
        if (p.s[p.pos] == '<')
            markup(&p);
        else
            text(&p);
    }
    if (p.stop)
        return p.errors;
    if (!p.root_seen)
        report(&p, OO_ERROR, OO_STRUCTURE, "the narrative is not well-formed XHTML: no <div> element");
    else if (p.depth)
        report(&p, OO_ERROR, OO_STRUCTURE, "the narrative is not well-formed XHTML: <%.*s> is never closed",
               (int)p.stack[p.depth - 1].name.len, p.stack[p.depth - 1].name.s);
    else if (!p.has_content)
        /* a warning, as the reference has it: its htmlChecks() does not look at content, and four official
           examples (EventDefinition-example ...) have an empty generated div */
        report(&p, OO_WARNING, OO_INVARIANT, "txt-2: The narrative SHALL have some non-whitespace content");
    resolve_fragments(&p);
    return p.errors;
}

/* ---- text that is not narrative -------------------------------------------------- */

size_t fx_find_tag(const char *s, size_t len)
{
    for (const char *lt = s; (lt = memchr(lt, '<', len - (size_t)(lt - s))); lt++) {
        size_t i = (size_t)(lt - s) + 1;
        if (len - i >= 3 && !memcmp(s + i, "!--", 3))
            return (size_t)(lt - s);
        if (i < len && s[i] == '/')
            i++;
        size_t name = i;
        while (i < len && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                           (i > name && s[i] >= '0' && s[i] <= '9')))
            i++;
        if (i == name || i >= len)
            continue;
        /* a name, then the end of the tag or an attribute: "<b>", "<br/>", "<img src=" */
        if (s[i] == '>' || s[i] == '/' || (is_space(s[i]) && memchr(s + i, '>', len - i)))
            return (size_t)(lt - s);
    }
    return len;
}

size_t fx_find_active_link(const char *s, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        size_t start;
        if (s[i] == ']' && s[i + 1] == '(')
            start = i + 2; /* [text](url) and ![alt](url) */
        else if (s[i] == '<' && i + 1 < len &&
                 ((s[i + 1] >= 'a' && s[i + 1] <= 'z') || (s[i + 1] >= 'A' && s[i + 1] <= 'Z')))
            start = i + 1; /* <scheme:...> autolinks */
        else
            continue;
        while (start < len && s[start] == ' ')
            start++;
        size_t end = start;
        while (end < len && s[end] != ')' && s[end] != '>' && s[end] != ' ')
            end++;
        size_t open = i; /* an image when the link text opens with "![" */
        while (s[i] == ']' && open > 0 && i - open < 1000 && s[open] != '[')
            open--;
        bool image = s[i] == ']' && s[open] == '[' && open > 0 && s[open - 1] == '!';
        if (url_problem(s + start, end - start, image))
            return s[i] == ']' ? i : start - 1;
    }
    return len;
}
