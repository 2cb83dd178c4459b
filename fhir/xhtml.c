/*
 * fhir/xhtml.c — the Narrative.div checker (see xhtml.h).
 *
 * A small XML tokenizer driven by one loop: text, `<!--`, `<![CDATA[`,
 * `<!DOCTYPE`, `<?`, end tags and start tags. Start tags push onto a fixed
 * stack of names (spans into the input), end tags must match the top.
 * Which elements and attributes txt-1 allows, and which attributes hold
 * URLs, are tables. Fragment references ("#id") are kept and resolved at
 * the end, when every id of the narrative has been seen.
 */
#include "fhir/xhtml.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define XHTML_NS "http://www.w3.org/1999/xhtml"
#define MAX_IDS 512
#define MAX_REFS 64
#define MAX_ATTRS 32
#define DECODE_CAP 256 /* enough of an attribute value to see its URL scheme */

typedef struct span {
    const char *s;
    size_t len;
} span;

typedef struct frag_ref {
    span id;
    bool image;
} frag_ref;

typedef struct parser {
    const char *s;
    size_t len, pos;
    const fx_options *opts;
    fx_report_fn report;
    void *report_ctx;
    size_t errors, reports;
    bool stop; /* not well-formed: nothing after this point can be trusted */
    unsigned max_depth, depth, in_para;
    span stack[FX_MAX_DEPTH_CAP];
    bool has_content, root_seen, root_closed;
    span ids[MAX_IDS];
    size_t id_count;
    frag_ref refs[MAX_REFS];
    size_t ref_count;
} parser;

/* txt-1: the elements of HTML 4.0 chapters 7-11 and 15 that narrative may use (as the HL7 validator lists them). */
static const char *const allowed_elements[] = {"p",          "br",   "div",     "h1",      "h2",       "h3",
                                               "h4",         "h5",   "h6",      "a",       "span",     "b",
                                               "em",         "i",    "strong",  "small",   "big",      "tt",
                                               "dfn",        "q",    "var",     "abbr",    "acronym",  "cite",
                                               "blockquote", "hr",   "address", "bdo",     "kbd",      "sub",
                                               "sup",        "ul",   "ol",      "li",      "dl",       "dt",
                                               "dd",         "pre",  "table",   "caption", "colgroup", "col",
                                               "thead",      "tr",   "tfoot",   "tbody",   "th",       "td",
                                               "code",       "samp", "img",     "map",     "area"};

/* Attributes any allowed element may carry. */
static const char *const global_attributes[] = {"title",  "style",     "class",    "id",   "lang",  "xml:lang",
                                                "dir",    "accesskey", "tabindex", "span", "width", "align",
                                                "valign", "char",      "charoff",  "abbr", "axis",  "headers",
                                                "scope",  "rowspan",   "colspan"};

/* Attributes allowed on one element only: "element attribute". */
static const struct {
    const char *element, *attribute;
} element_attributes[] = {{"a", "href"},
                          {"a", "name"},
                          {"a", "charset"},
                          {"a", "type"},
                          {"a", "hreflang"},
                          {"a", "rel"},
                          {"a", "rev"},
                          {"a", "shape"},
                          {"a", "coords"},
                          {"img", "src"},
                          {"img", "border"},
                          {"img", "alt"},
                          {"img", "longdesc"},
                          {"img", "height"},
                          {"img", "width"},
                          {"img", "usemap"},
                          {"img", "ismap"},
                          {"map", "name"},
                          {"area", "shape"},
                          {"area", "coords"},
                          {"area", "href"},
                          {"area", "nohref"},
                          {"area", "alt"},
                          {"blockquote", "cite"},
                          {"q", "cite"},
                          {"table", "summary"},
                          {"table", "width"},
                          {"table", "border"},
                          {"table", "frame"},
                          {"table", "rules"},
                          {"table", "cellspacing"},
                          {"table", "cellpadding"},
                          {"pre", "space"},
                          {"td", "nowrap"},
                          {"div", "xmlns"}};

/* Attributes whose value is a URL a renderer follows or loads. */
static const struct {
    const char *element, *attribute;
    bool image;
} url_attributes[] = {{"a", "href", false},       {"area", "href", false},       {"img", "src", true},
                      {"img", "longdesc", false}, {"blockquote", "cite", false}, {"q", "cite", false}};

/* Block elements that may not sit inside a paragraph. */
static const char *const block_elements[] = {"div", "blockquote", "table", "ol", "ul", "p"};

#define COUNT(a) (sizeof(a) / sizeof *(a))

static bool span_is(span x, const char *lit)
{
    /* most calls are misses (in_list walks the allowed names per tag): the first byte decides them */
    if (!x.len || x.s[0] != lit[0])
        return false;
    size_t n = strlen(lit);
    return x.len == n && !memcmp(x.s, lit, n);
}

static bool span_eq(span a, span b)
{
    return a.len == b.len && !memcmp(a.s, b.s, a.len);
}

static bool in_list(span x, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (span_is(x, list[i]))
            return true;
    return false;
}

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

static bool at(const parser *p, const char *lit)
{
    size_t n = strlen(lit);
    return p->len - p->pos >= n && !memcmp(p->s + p->pos, lit, n);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void skip_space(parser *p)
{
    while (p->pos < p->len && is_space(p->s[p->pos]))
        p->pos++;
}

/* Skip past `end`; false (and not well-formed) when it never comes. */
static bool skip_past(parser *p, const char *end, const char *what)
{
    size_t n = strlen(end);
    for (size_t i = p->pos; i + n <= p->len; i++)
        if (!memcmp(p->s + i, end, n)) {
            p->pos = i + n;
            return true;
        }
    fail(p, what);
    return false;
}

static bool name_start(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || c >= 0x80;
}

static bool name_char(unsigned char c)
{
    return name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

static span read_name(parser *p)
{
    span n = {p->s + p->pos, 0};
    if (p->pos < p->len && name_start((unsigned char)p->s[p->pos]))
        while (p->pos < p->len && name_char((unsigned char)p->s[p->pos]))
            p->pos++;
    n.len = (size_t)(p->s + p->pos - n.s);
    return n;
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

/* Text or an attribute value s[0..n): references must be defined, characters XML ones. */
static void check_chars(parser *p, const char *s, size_t n, bool *non_space)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '&') {
            uint32_t ch;
            size_t k = read_reference(s + i, n - i, &ch);
            if (!k) {
                size_t show = 1;
                while (show < n - i && show < 40 && s[i + show - 1] != ';' && s[i + show] != '<' && s[i + show] != ' ')
                    show++;
                report(p, OO_ERROR, OO_INVALID,
                       "'%.*s' is not an entity XHTML defines (only &lt; &gt; &amp; &quot; &apos; and character "
                       "references)",
                       (int)show, s + i);
                continue;
            }
            if (non_space && !is_space((char)ch))
                *non_space = true;
            i += k - 1;
        } else if (c < 0x20 && !is_space((char)c)) {
            report(p, OO_ERROR, OO_INVALID, "control character 0x%02x is not allowed in XHTML", c);
        } else if (non_space && !is_space((char)c)) {
            *non_space = true;
        }
    }
}

/* The value with references decoded and tab/CR/LF dropped (browsers drop them inside URLs), up to cap bytes. */
static size_t decode_value(span v, char *out, size_t cap)
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
        if (c != '\t' && c != '\n' && c != '\r')
            out[o++] = c;
    }
    return o;
}

static bool prefix_ci(const char *s, size_t n, const char *lit)
{
    size_t k = strlen(lit);
    if (n < k)
        return false;
    for (size_t i = 0; i < k; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != lit[i])
            return false;
    }
    return true;
}

/* NULL when the URL is inert, else why not. */
static const char *url_problem(const char *u, size_t n, bool image)
{
    while (n && ((unsigned char)u[0] <= 0x20)) { /* browsers skip leading spaces and controls */
        u++;
        n--;
    }
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

static bool attribute_allowed(span el, span name)
{
    if (in_list(name, global_attributes, COUNT(global_attributes)))
        return true;
    if (name.len >= 5 && !memcmp(name.s, "xmlns", 5))
        return true; /* namespace declarations; their values are checked apart */
    for (size_t i = 0; i < COUNT(element_attributes); i++)
        if (span_is(el, element_attributes[i].element) && span_is(name, element_attributes[i].attribute))
            return true;
    return false;
}

/* One attribute of element el: allowed by txt-1, its value inert, its ids and fragments noted. */
static void check_attribute(parser *p, span el, span name, span value)
{
    check_chars(p, value.s, value.len, NULL);
    char decoded[DECODE_CAP];
    size_t dlen = decode_value(value, decoded, sizeof decoded);
    if (name.len > 2 && prefix_ci(name.s, name.len, "on")) {
        report(p, OO_ERROR, OO_INVARIANT,
               "txt-1: the event handler attribute '%.*s' on <%.*s> is active content, which narrative SHALL NOT "
               "contain",
               (int)name.len, name.s, (int)el.len, el.s);
        return;
    }
    if (span_is(name, "xml:space")) {
        report(p, OO_INFORMATION, OO_INVALID, "xml:space on <%.*s> has no effect in narrative", (int)el.len, el.s);
        return;
    }
    if (!attribute_allowed(el, name)) {
        report(p, OO_ERROR, OO_INVARIANT, "txt-1: the attribute '%.*s' is not allowed on <%.*s> in narrative",
               (int)(name.len > 60 ? 60 : name.len), name.s, (int)el.len, el.s);
        return;
    }
    if (span_is(name, "xmlns") && !span_is(value, XHTML_NS))
        report(p, OO_ERROR, OO_INVALID, "the namespace of <%.*s> is '%.*s'; narrative is XHTML (" XHTML_NS ")",
               (int)el.len, el.s, (int)(value.len > 80 ? 80 : value.len), value.s);
    if (span_is(name, "style")) {
        for (size_t i = 0; i < dlen; i++)
            if (prefix_ci(decoded + i, dlen - i, "expression(") || prefix_ci(decoded + i, dlen - i, "javascript:") ||
                prefix_ci(decoded + i, dlen - i, "-moz-binding")) {
                report(p, OO_ERROR, OO_INVALID, "the style of <%.*s> carries script ('%.*s')", (int)el.len, el.s,
                       (int)(dlen - i > 20 ? 20 : dlen - i), decoded + i);
                break;
            }
    }
    if (span_is(name, "id") || (span_is(el, "a") && span_is(name, "name")))
        note_id(p, value);
    for (size_t i = 0; i < COUNT(url_attributes); i++) {
        if (!span_is(el, url_attributes[i].element) || !span_is(name, url_attributes[i].attribute))
            continue;
        const char *problem = url_problem(decoded, dlen, url_attributes[i].image);
        if (problem)
            report(p, OO_ERROR, OO_INVALID, "<%.*s %.*s=\"%.*s\">: %s", (int)el.len, el.s, (int)name.len, name.s,
                   (int)(dlen > 60 ? 60 : dlen), decoded, problem);
        else
            note_fragment(p, value, url_attributes[i].image);
    }
}

/* Attributes up to '>' or '/>'; returns false when the tag is not well-formed. */
static bool read_attributes(parser *p, span el, bool *self_closing, bool *has_xmlns)
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
        if (p->s[p->pos] == '>' || at(p, "/>")) {
            *self_closing = p->s[p->pos] == '/';
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
        const char *v = p->s + ++p->pos, *end = memchr(v, quote, p->len - p->pos);
        if (!end) {
            fail(p, "an attribute value is not closed");
            return false;
        }
        span value = {v, (size_t)(end - v)};
        p->pos = (size_t)(end - p->s) + 1;
        if (memchr(value.s, '<', value.len)) {
            fail(p, "'<' inside an attribute value");
            return false;
        }
        for (size_t i = 0; i < seen_count; i++)
            if (span_eq(seen[i], name)) {
                fail(p, "an attribute is repeated");
                return false;
            }
        if (seen_count < MAX_ATTRS)
            seen[seen_count++] = name;
        if (span_is(name, "xmlns"))
            *has_xmlns = true; /* a wrong value is check_attribute's to report */
        check_attribute(p, el, name, value);
    }
}

static void start_tag(parser *p)
{
    p->pos++; /* '<' */
    span el = read_name(p);
    if (!el.len) {
        fail(p, "'<' does not start a tag (write &lt;)");
        return;
    }
    if (p->root_closed) {
        fail(p, "content after the root element");
        return;
    }
    bool is_root = !p->root_seen;
    p->root_seen = true;
    if (is_root && !span_is(el, "div"))
        report(p, OO_ERROR, OO_INVALID, "the root of narrative is a <div>, found <%.*s>", (int)el.len, el.s);
    if (memchr(el.s, ':', el.len))
        report(p, OO_ERROR, OO_INVALID, "<%.*s>: narrative elements are in the default XHTML namespace, unprefixed",
               (int)el.len, el.s);
    else if (!in_list(el, allowed_elements, COUNT(allowed_elements)))
        report(p, OO_ERROR, OO_INVARIANT, "txt-1: the element <%.*s> is not allowed in narrative%s",
               (int)(el.len > 60 ? 60 : el.len), el.s,
               span_is(el, "script") || span_is(el, "iframe") || span_is(el, "object") || span_is(el, "embed")
                   ? " (active content)"
                   : "");
    if (p->in_para && in_list(el, block_elements, COUNT(block_elements)))
        report(p, OO_ERROR, OO_INVALID, "<%.*s> is a block element and cannot be inside a <p>", (int)el.len, el.s);
    if (span_is(el, "img"))
        p->has_content = true; /* an image is content (txt-2) */
    bool self_closing = false, has_xmlns = false;
    if (!read_attributes(p, el, &self_closing, &has_xmlns))
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
    p->in_para += span_is(el, "p");
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
    if (!p->depth || !span_eq(p->stack[p->depth - 1], el)) {
        fail(p, "an end tag does not match the open element");
        return;
    }
    p->depth--;
    p->in_para -= span_is(el, "p");
    if (!p->depth)
        p->root_closed = true;
}

static void text(parser *p)
{
    const char *lt = memchr(p->s + p->pos, '<', p->len - p->pos);
    size_t end = lt ? (size_t)(lt - p->s) : p->len;
    bool non_space = false;
    check_chars(p, p->s + p->pos, end - p->pos, &non_space);
    if (non_space && !p->depth)
        fail(p, "text outside the root element");
    p->has_content |= non_space;
    p->pos = end;
}

static void markup(parser *p)
{
    if (at(p, "<!--")) {
        p->pos += 4;
        skip_past(p, "-->", "a comment is not closed");
    } else if (at(p, "<![CDATA[")) {
        size_t start = p->pos += 9;
        if (skip_past(p, "]]>", "a CDATA section is not closed")) {
            for (size_t i = start; i < p->pos - 3; i++)
                p->has_content |= !is_space(p->s[i]);
        }
    } else if (at(p, "<!")) {
        report(p, OO_ERROR, OO_INVALID, "a DOCTYPE or other declaration is not allowed in narrative");
        p->stop = true; /* it may define entities: nothing after it reads the same */
    } else if (at(p, "<?")) {
        report(p, OO_ERROR, OO_INVALID, "processing instructions are not allowed in narrative");
        p->pos += 2;
        skip_past(p, "?>", "a processing instruction is not closed");
    } else if (at(p, "</")) {
        end_tag(p);
    } else {
        start_tag(p);
    }
}

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
    static parser zero;
    parser p = zero;
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
               (int)p.stack[p.depth - 1].len, p.stack[p.depth - 1].s);
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
