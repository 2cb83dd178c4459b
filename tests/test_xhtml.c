/*
 * tests/test_xhtml.c — the narrative checker (fhir/xhtml.h) on its own:
 * what R4 allows passes, each kind of defect is reported with its code,
 * and hostile input (deep nesting, huge or truncated markup, obfuscated
 * script URLs) is refused without crashing or hanging.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/xhtml.h"

#define NS "xmlns=\"http://www.w3.org/1999/xhtml\""

typedef struct seen {
    size_t count, errors;
    char codes[512];
    char first[512];
} seen;

static void collect(void *ctx, oo_severity sev, const char *code, const char *message)
{
    seen *s = ctx;
    if (!s->count++)
        snprintf(s->first, sizeof s->first, "%s", message);
    s->errors += sev <= OO_ERROR;
    strncat(s->codes, code, sizeof s->codes - strlen(s->codes) - 2);
    strcat(s->codes, " ");
}

static seen run(const char *div)
{
    seen s = {0};
    fx_check(div, strlen(div), NULL, collect, &s);
    return s;
}

/* One error whose message contains `part`. */
static void expect_error(const char *div, const char *code, const char *part)
{
    seen s = run(div);
    cr_expect_eq(s.errors, 1, "%s: expected 1 error, got %zu (%s)", div, s.errors, s.first);
    cr_expect(strstr(s.codes, code) != NULL, "%s: expected code %s, got %s", div, code, s.codes);
    cr_expect(strstr(s.first, part) != NULL, "%s: message '%s' lacks '%s'", div, s.first, part);
}

Test(xhtml, allowed_narrative_passes)
{
    const char *ok[] = {
        "<div " NS "><p>Hello <b>world</b></p></div>",
        "<div " NS
        ">\n  <table><tbody><tr><td colspan=\"2\">a &amp; b &#x263A; &#9731;</td></tr></tbody></table>\n</div>",
        "<div " NS "><a name=\"top\"/><a href=\"#top\">up</a> <a href=\"https://hl7.org/fhir\">spec</a></div>",
        "<div " NS "><img src=\"http://example.org/x.png\" alt=\"x\"/></div>",
        "<div " NS "><img src=\"data:image/png;base64,iVBORw0KGgo=\"/></div>",
        "<div " NS "><!-- a comment --><span style=\"color: red\">red</span><![CDATA[ raw ]]></div>",
        "<div " NS " xml:lang=\"nl\" lang=\"nl\"><ul><li>een</li></ul></div>",
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        seen s = run(ok[i]);
        cr_expect_eq(s.count, 0, "%s: expected no issue, got %zu (%s)", ok[i], s.count, s.first);
    }
}

Test(xhtml, elements_and_attributes_outside_txt_1)
{
    expect_error("<div " NS "><script>alert(1)</script>x</div>", "invariant", "txt-1: the element <script>");
    expect_error("<div " NS "><iframe/>x</div>", "invariant", "<iframe>");
    expect_error("<div " NS "><form>x</form></div>", "invariant", "<form>");
    expect_error("<div " NS "><p onclick=\"alert(1)\">x</p></div>", "invariant", "event handler attribute 'onclick'");
    expect_error("<div " NS "><img src=\"x.png\" onerror=\"alert(1)\"/></div>", "invariant", "onerror");
    expect_error("<div " NS "><p href=\"x\">x</p></div>", "invariant", "'href' is not allowed on <p>");
    expect_error("<div " NS "><P>upper case is another element</P></div>", "invariant", "<P>");
}

Test(xhtml, active_urls)
{
    expect_error("<div " NS "><a href=\"javascript:alert(1)\">x</a></div>", "invalid", "script URLs");
    expect_error("<div " NS "><a href=\" JaVaScRiPt:alert(1)\">x</a></div>", "invalid", "script URLs");
    expect_error("<div " NS "><a href=\"java&#x9;script:alert(1)\">x</a></div>", "invalid", "script URLs");
    expect_error("<div " NS "><a href=\"javascript&#58;alert(1)\">x</a></div>", "invalid", "script URLs");
    expect_error("<div " NS "><a href=\"data:text/html,&lt;script&gt;\">x</a></div>", "invalid", "data: URLs");
    expect_error("<div " NS "><img src=\"data:image/svg+xml;base64,AAAA\"/></div>", "invalid", "data: URLs");
    expect_error("<div " NS "><span style=\"width: expression(alert(1))\">x</span></div>", "invalid", "script");
}

/* A div with `what` at the place of %s in `shape`, after `pad` copies of `filler`. */
static seen run_padded(const char *shape, const char *filler, int pad, const char *what)
{
    size_t size = strlen(shape) + strlen(filler) * (size_t)pad + strlen(what) + 1;
    char *value = malloc(strlen(filler) * (size_t)pad + strlen(what) + 1), *div = malloc(size);
    value[0] = '\0';
    for (int i = 0; i < pad; i++)
        strcat(value, filler);
    strcat(value, what);
    snprintf(div, size, shape, value);
    seen s = run(div);
    free(value);
    free(div);
    return s;
}

/* Browsers skip any amount of leading space before a URL's scheme, and read every byte of a style. */
Test(xhtml, script_after_long_padding)
{
    const char *link = "<div " NS "><a href=\"%s\">x</a></div>";
    const char *styled = "<div " NS "><span style=\"%s\">x</span></div>";
    struct {
        const char *shape, *filler, *what, *expected;
        int pad;
    } cases[] = {
        {link, " ", "javascript:alert(1)", "script URLs", 300},
        {link, "&#32;", "javascript:alert(1)", "script URLs", 300},
        {link, " ", "java&#x9;script:alert(1)", "script URLs", 1000},
        {styled, "color: red; ", "width: expression(alert(1))", "carries script", 100},
        {styled, "color: red; ", "background: url(javascript:alert(1))", "carries script", 100},
        {styled, "color: &#114;ed; ", "width: expression(alert(1))", "carries script", 100},
        {styled, "color: red; ", "-moz-binding: url(x.xml#y)", "carries script", 30},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        seen s = run_padded(cases[i].shape, cases[i].filler, cases[i].pad, cases[i].what);
        cr_expect_eq(s.errors, 1, "case %zu: %zu errors (%s)", i, s.errors, s.first);
        cr_expect(strstr(s.first, cases[i].expected) != NULL, "case %zu: %s", i, s.first);
    }
    /* the same lengths of harmless style and links pass */
    seen ok = run_padded(styled, "color: r&#101;d; ", 200, "width: 50%");
    cr_expect_eq(ok.errors, 0, "%s", ok.first);
    ok = run_padded(link, " ", 300, "https://example.org/x");
    cr_expect_eq(ok.errors, 0, "%s", ok.first);
}

Test(xhtml, well_formedness)
{
    expect_error("<div " NS "><p>x</div>", "structure", "does not match");
    expect_error("<div " NS "><p>x</p>", "structure", "never closed");
    expect_error("<div " NS " class=a>x</div>", "structure", "quoted");
    expect_error("<div " NS " class=\"a\" class=\"b\">x</div>", "structure", "repeated");
    expect_error("<div " NS ">a < b</div>", "structure", "&lt;");
    expect_error("<div " NS ">x</div><div " NS ">y</div>", "structure", "after the root");
    expect_error("text<div " NS ">x</div>", "structure", "outside the root");
    expect_error("<div " NS "><!-- never closed </div>", "structure", "comment");
    expect_error("", "structure", "no <div>");
}

Test(xhtml, entities_namespace_root_content)
{
    expect_error("<div " NS ">&nbsp;x</div>", "invalid", "&nbsp;");
    expect_error("<div " NS ">&#0;x</div>", "invalid", "&#0;");
    expect_error("<div " NS ">x&amp</div>", "invalid", "&amp");
    expect_error("<div>x</div>", "invalid", "xmlns");
    expect_error("<div xmlns=\"http://www.w3.org/2000/svg\">x</div>", "invalid", "namespace");
    expect_error("<span " NS ">x</span>", "invalid", "root of narrative");
    expect_error("<!DOCTYPE x [<!ENTITY e \"y\">]><div " NS ">&e;</div>", "invalid", "DOCTYPE");
    expect_error("<div " NS "><?php echo 1 ?>x</div>", "invalid", "processing instructions");
    expect_error("<div " NS "><p>x<div>block</div></p></div>", "invalid", "inside a <p>");
}

static bool only_c1(void *ctx, const char *id, size_t len)
{
    (void)ctx;
    return len == 2 && !memcmp(id, "c1", 2);
}

Test(xhtml, empty_narrative_is_a_txt_2_warning)
{
    seen s = run("<div " NS ">  <p> </p> </div>");
    cr_expect_eq(s.errors, 0);
    cr_expect_eq(s.count, 1);
    cr_expect(strstr(s.first, "txt-2") != NULL, "%s", s.first);
    s = run("<div " NS "><img src=\"https://example.org/x.png\"/></div>");
    cr_expect_eq(s.count, 0, "an image is content: %s", s.first);
}

Test(xhtml, internal_references)
{
    seen s = {0};
    fx_options o = {0, 0, only_c1, NULL};
    const char *good = "<div " NS "><img src=\"#c1\"/><a href=\"#c1\">c1</a></div>";
    fx_check(good, strlen(good), &o, collect, &s);
    cr_expect_eq(s.count, 0, "%s", s.first);
    memset(&s, 0, sizeof s);
    const char *bad = "<div " NS "><img src=\"#nope\"/></div>";
    fx_check(bad, strlen(bad), &o, collect, &s);
    cr_expect_eq(s.errors, 0, "an unresolved image is a warning: %s", s.first);
    cr_expect(strstr(s.first, "#nope") != NULL, "%s", s.first);
    memset(&s, 0, sizeof s);
    const char *href = "<div " NS "><a href=\"#nope\">x</a></div>";
    fx_check(href, strlen(href), &o, collect, &s);
    cr_expect_eq(s.errors, 0);
    cr_expect_eq(s.count, 1, "an unresolved href is a warning");
}

Test(xhtml, hostile_input_is_bounded)
{
    /* 100,000 nested spans: stops at the depth limit with one error */
    size_t n = 100000, len = 0;
    char *deep = malloc(n * 6 + 64);
    cr_assert_not_null(deep);
    len += (size_t)sprintf(deep, "<div " NS ">");
    for (size_t i = 0; i < n; i++, len += 6)
        memcpy(deep + len, "<span>", 6);
    seen s = {0};
    fx_check(deep, len, NULL, collect, &s);
    cr_expect_eq(s.errors, 1);
    cr_expect(strstr(s.first, "deeper than") != NULL, "%s", s.first);
    /* too large: refused unread */
    memset(&s, 0, sizeof s);
    fx_options small = {64, 0, NULL, NULL};
    fx_check(deep, len, &small, collect, &s);
    cr_expect(strstr(s.first, "bytes") != NULL, "%s", s.first);
    /* every prefix of a valid div: never crashes, never passes unless complete */
    const char *full = "<div " NS "><p class=\"x\">a &amp; <b>b</b><!-- c --><img src=\"#i\"/></p></div>";
    for (size_t k = 0; k < strlen(full); k++) {
        char *cut = malloc(k ? k : 1); /* exactly k bytes: ASan sees any read past them */
        memcpy(cut, full, k);
        memset(&s, 0, sizeof s);
        fx_check(cut, k, NULL, collect, &s);
        cr_expect_gt(s.errors, 0, "prefix of %zu bytes passed", k);
        free(cut);
    }
    /* many issues: reported up to the cap, all counted */
    memset(&s, 0, sizeof s);
    len = (size_t)sprintf(deep, "<div " NS ">");
    for (size_t i = 0; i < 200; i++)
        len += (size_t)sprintf(deep + len, "&bad;");
    len += (size_t)sprintf(deep + len, "</div>");
    size_t errors = fx_check(deep, len, NULL, collect, &s);
    cr_expect_eq(errors, 200);
    cr_expect_eq(s.count, FX_MAX_REPORTS);
    free(deep);
}

static bool has_tag(const char *s)
{
    return fx_find_tag(s, strlen(s)) < strlen(s);
}

static bool has_active_link(const char *s)
{
    return fx_find_active_link(s, strlen(s)) < strlen(s);
}

Test(xhtml, tags_in_plain_text)
{
    cr_expect(has_tag("a <b>bold</b> word"));
    cr_expect(has_tag("x </div>"));
    cr_expect(has_tag("<img src=x onerror=alert(1)>"));
    cr_expect(has_tag("line<br/>break"));
    cr_expect(has_tag("<!-- hidden -->"));
    cr_expect(!has_tag("a < b and c > d"));
    cr_expect(!has_tag("dose <5 mg"));
    cr_expect(!has_tag("<<"));
    cr_expect(!has_tag("ends with <"));
    cr_expect(!has_tag("<img src=x"), "a tag that never closes is not rendered as one");
    cr_expect_eq(fx_find_tag("ab<i>", 5), 2);
}

Test(xhtml, active_links_in_markdown)
{
    cr_expect(has_active_link("see [x](javascript:alert(1))"));
    cr_expect(has_active_link("see [x]( JavaScript:alert(1))"));
    cr_expect(has_active_link("<vbscript:msgbox(1)>"));
    cr_expect(has_active_link("[x](data:text/html,hi)"));
    cr_expect(has_active_link("![x](data:image/svg+xml,AAAA)"));
    cr_expect(!has_active_link("![x](data:image/png;base64,AAAA)"));
    cr_expect(!has_active_link("see [the spec](https://hl7.org/fhir) and <https://example.org>"));
    cr_expect(!has_active_link("[not closed"));
}

/* ---- the fast paths (word-at-a-time text, hashed names) see what the byte loop saw ---- */

/* The div with `pad` letters of text, then `what`, then more text: the construct at every offset of an 8-byte word. */
static seen run_at_offsets(const char *what, size_t pad, char *buf, size_t cap)
{
    size_t len = (size_t)snprintf(buf, cap, "<div " NS ">%.*s%sxyz</div>", (int)pad,
                                  "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", what);
    char *exact = malloc(len); /* exactly len bytes: ASan sees any read past them */
    memcpy(exact, buf, len);
    seen s = {0};
    fx_check(exact, len, NULL, collect, &s);
    free(exact);
    return s;
}

Test(xhtml, constructs_at_every_word_offset)
{
    char buf[256];
    for (size_t pad = 0; pad <= 24; pad++) {
        seen s = run_at_offsets("\x01", pad, buf, sizeof buf);
        cr_expect_eq(s.errors, 1, "pad %zu: %s", pad, s.first);
        cr_expect(strstr(s.first, "control character 0x01") != NULL, "pad %zu: %s", pad, s.first);
        s = run_at_offsets("\x1f", pad, buf, sizeof buf);
        cr_expect(strstr(s.first, "control character 0x1f") != NULL, "pad %zu: %s", pad, s.first);
        s = run_at_offsets("&bad;", pad, buf, sizeof buf);
        cr_expect(strstr(s.first, "'&bad;'") != NULL, "pad %zu: %s", pad, s.first);
        s = run_at_offsets("<script>x</script>", pad, buf, sizeof buf);
        cr_expect_eq(s.errors, 1, "pad %zu", pad);
        cr_expect(strstr(s.first, "<script> is not allowed in narrative (active content)") != NULL, "pad %zu: %s", pad,
                  s.first);
        s = run_at_offsets("a < b", pad, buf, sizeof buf);
        cr_expect(strstr(s.first, "&lt;") != NULL, "pad %zu: %s", pad, s.first);
        /* what the word-at-a-time scan must pass over: whitespace, references, bytes >= 0x80, DEL */
        const char *fine[] = {"\t\n\r ", "&amp;&#x263A;", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "\x7f", "~}|{"};
        for (size_t f = 0; f < sizeof fine / sizeof *fine; f++) {
            s = run_at_offsets(fine[f], pad, buf, sizeof buf);
            cr_expect_eq(s.count, 0, "pad %zu, text %zu: %s", pad, f, s.first);
        }
    }
}

Test(xhtml, multibyte_text_next_to_markup)
{
    seen s = run("<div " NS ">\xc3\xa9<b>\xc3\xbc</b>\xe2\x82\xac<br/>\xf0\x9f\x98\x80</div>");
    cr_expect_eq(s.count, 0, "%s", s.first);
    /* text of nothing but non-ASCII characters is content (only ASCII whitespace is not) */
    s = run("<div " NS "><p>\xc3\xa9</p></div>");
    cr_expect_eq(s.count, 0, "%s", s.first);
    s = run("<div " NS "><p>   \n\t  </p></div>");
    cr_expect(strstr(s.first, "txt-2") != NULL, "%s", s.first);
    /* a non-ASCII byte starts a name as XML has it: not an allowed element */
    s = run("<div " NS "><\xc3\xa9>x</\xc3\xa9></div>");
    cr_expect_eq(s.errors, 1);
    cr_expect(strstr(s.first, "txt-1: the element <\xc3\xa9>") != NULL, "%s", s.first);
    /* a character reference for whitespace is not content; for a letter it is */
    s = run("<div " NS "><p>&#32;&#x9;</p></div>");
    cr_expect(strstr(s.first, "txt-2") != NULL, "%s", s.first);
    s = run("<div " NS "><p>&#65;</p></div>");
    cr_expect_eq(s.count, 0, "%s", s.first);
}

/* fx_check over exactly the bytes of div (no NUL after them for a scan to stop at). */
static seen run_exact(const char *div)
{
    size_t len = strlen(div);
    char *exact = malloc(len ? len : 1);
    memcpy(exact, div, len);
    seen s = {0};
    fx_check(exact, len, NULL, collect, &s);
    free(exact);
    return s;
}

Test(xhtml, references_at_the_end_of_the_input)
{
    const char *ends[] = {"&", "&a", "&amp", "&#", "&#x", "&#x26", "&#38", "&lt"};
    for (size_t i = 0; i < sizeof ends / sizeof *ends; i++) {
        char div[128];
        snprintf(div, sizeof div, "<div " NS ">x%s", ends[i]);
        seen s = run_exact(div);
        cr_expect_eq(s.errors, 2, "%s: %zu errors (%s)", div, s.errors, s.first);
        char want[64];
        snprintf(want, sizeof want, "'%s' is not an entity", ends[i]);
        cr_expect(strstr(s.first, want) != NULL, "%s: %s", div, s.first);
    }
    /* complete references as the last bytes: only the unclosed div is wrong */
    seen s = run_exact("<div " NS ">x&amp;");
    cr_expect_eq(s.errors, 1, "%s", s.first);
    cr_expect(strstr(s.first, "never closed") != NULL, "%s", s.first);
    s = run_exact("<div " NS ">x&#x263A;");
    cr_expect(strstr(s.first, "never closed") != NULL, "%s", s.first);
    /* a reference cut by a tag is not one */
    s = run("<div " NS ">&am<b>p;</b></div>");
    cr_expect(strstr(s.first, "'&am' is not an entity") != NULL, "%s", s.first);
}

Test(xhtml, names_that_differ_after_the_first_bytes)
{
    /* attributes: near misses of allowed names are not allowed */
    const char *attributes[] = {"titles", "titl", "txtxe", "ids", "stylex", "colspan2", "rowspa", "xml:langs"};
    for (size_t i = 0; i < sizeof attributes / sizeof *attributes; i++) {
        char div[160], want[96];
        snprintf(div, sizeof div, "<div " NS "><p %s=\"x\">y</p></div>", attributes[i]);
        snprintf(want, sizeof want, "the attribute '%s' is not allowed on <p>", attributes[i]);
        expect_error(div, "invariant", want);
    }
    /* elements: near misses, other cases and other lengths */
    const char *elements[] = {"tablex", "tabl", "tbodx", "divv", "h7", "h0", "bq", "Div", "spam", "cites"};
    for (size_t i = 0; i < sizeof elements / sizeof *elements; i++) {
        char div[160], want[96];
        snprintf(div, sizeof div, "<div " NS "><%s>y</%s></div>", elements[i], elements[i]);
        snprintf(want, sizeof want, "txt-1: the element <%s> is not allowed in narrative", elements[i]);
        expect_error(div, "invariant", want);
    }
    /* names of attributes as elements, and the other way round */
    expect_error("<div " NS "><href>y</href></div>", "invariant", "the element <href>");
    expect_error("<div " NS "><p table=\"1\">y</p></div>", "invariant", "the attribute 'table'");
    /* every allowed element and global attribute still passes */
    seen s = run("<div " NS " title=\"t\" class=\"c\" id=\"i\" lang=\"nl\" dir=\"ltr\" accesskey=\"a\" tabindex=\"1\" "
                 "span=\"1\" width=\"1\" align=\"left\" valign=\"top\" char=\".\" charoff=\"1\" abbr=\"a\" axis=\"a\" "
                 "headers=\"h\" scope=\"row\" rowspan=\"1\" colspan=\"1\" style=\"color: red\">"
                 "<h1>a</h1><h2>a</h2><h3>a</h3><h4>a</h4><h5>a</h5><h6>a</h6><span>a</span><b>a</b><em>a</em>"
                 "<i>a</i><strong>a</strong><small>a</small><big>a</big><tt>a</tt><dfn>a</dfn><q>a</q><var>a</var>"
                 "<abbr>a</abbr><acronym>a</acronym><cite>a</cite><blockquote>a</blockquote><hr/><address>a</address>"
                 "<bdo>a</bdo><kbd>a</kbd><sub>a</sub><sup>a</sup><ul><li>a</li></ul><ol><li>a</li></ol>"
                 "<dl><dt>a</dt><dd>a</dd></dl><pre>a</pre><code>a</code><samp>a</samp><br/>"
                 "<table><caption>a</caption><colgroup><col/></colgroup><thead><tr><th>a</th></tr></thead>"
                 "<tfoot><tr><td>a</td></tr></tfoot><tbody><tr><td>a</td></tr></tbody></table>"
                 "<map name=\"m\"><area shape=\"rect\" coords=\"0,0,1,1\" href=\"https://x.org\" alt=\"a\"/></map>"
                 "<p>a</p></div>");
    cr_expect_eq(s.count, 0, "%s", s.first);
}

Test(xhtml, attributes_allowed_on_one_element_only)
{
    seen s = run("<div " NS
                 "><a name=\"n\" charset=\"c\" type=\"t\" hreflang=\"nl\" rel=\"r\" rev=\"r\" shape=\"rect\" "
                 "coords=\"1\" href=\"#n\">a</a><img src=\"https://x.org/i.png\" border=\"0\" alt=\"a\" "
                 "longdesc=\"https://x.org\" height=\"1\" width=\"1\" usemap=\"#m\" ismap=\"ismap\"/>"
                 "<map name=\"m\"><area nohref=\"nohref\" alt=\"a\"/></map><blockquote cite=\"https://x.org\">q"
                 "</blockquote><q cite=\"https://x.org\">q</q><table summary=\"s\" border=\"1\" frame=\"box\" "
                 "rules=\"all\" cellspacing=\"0\" cellpadding=\"0\"><tr><td nowrap=\"nowrap\">a</td></tr></table>"
                 "<pre space=\"x\">a</pre><p xmlns=\"http://www.w3.org/1999/xhtml\" xmlns:x=\"urn:x\">a</p></div>");
    cr_expect_eq(s.count, 0, "%s", s.first);
    expect_error("<div " NS "><a src=\"x.png\">x</a></div>", "invariant", "'src' is not allowed on <a>");
    expect_error("<div " NS "><img href=\"x\"/></div>", "invariant", "'href' is not allowed on <img>");
    expect_error("<div " NS "><p cite=\"x\">x</p></div>", "invariant", "'cite' is not allowed on <p>");
    expect_error("<div " NS "><th nowrap=\"1\">x</th></div>", "invariant", "'nowrap' is not allowed on <th>");
    /* name is an id on <a> only: "#m" names nothing here */
    s = run("<div " NS "><map name=\"m\"/><a href=\"#m\">x</a></div>");
    cr_expect_eq(s.errors, 0, "%s", s.first);
    cr_expect(strstr(s.first, "href=\"#m\": nothing") != NULL, "%s", s.first);
    /* URLs in the attributes that hold them, on the elements where they do */
    expect_error("<div " NS "><area href=\"javascript:x\"/>y</div>", "invalid", "<area href=\"javascript:x\">");
    expect_error("<div " NS "><img longdesc=\"vbscript:x\"/></div>", "invalid", "script URLs");
    expect_error("<div " NS "><blockquote cite=\"javascript:x\">y</blockquote></div>", "invalid", "script URLs");
    expect_error("<div " NS "><q cite=\"livescript:x\">y</q></div>", "invalid", "script URLs");
    expect_error("<div " NS "><img src=\"&#x20;&#x09;javascript:x\"/></div>", "invalid", "script URLs");
    expect_error("<div " NS "><a href=\"DATA:image/png,x\">y</a></div>", "invalid", "data: URLs");
    expect_error("<div " NS "><p xmlns=\"urn:x\">y</p></div>", "invalid", "the namespace of <p> is 'urn:x'");
}

Test(xhtml, script_in_style_after_other_letters)
{
    expect_error("<div " NS "><span style=\"e-ee exp EXPRESSION(alert(1))\">x</span></div>", "invalid",
                 "carries script ('EXPRESSION(alert(1))')");
    expect_error("<div " NS "><span style=\"jjj javascript&#58;x\">x</span></div>", "invalid", "('javascript:x')");
    expect_error("<div " NS "><span style=\"--moz -moz-binding: url(x)\">x</span></div>", "invalid", "-moz-binding");
    seen s = run("<div " NS "><span style=\"expression javascript -moz-bind\">x</span></div>");
    cr_expect_eq(s.count, 0, "%s", s.first);
}

Test(xhtml, attribute_values_at_every_word_offset)
{
    static const char pad[] = "abcdefghijklmnopqrstuvwxyz";
    for (int n = 0; n <= 20; n++) {
        char div[192];
        snprintf(div, sizeof div, "<div " NS "><p title=\"%.*s\x02x\">y</p></div>", n, pad);
        seen s = run_exact(div);
        cr_expect(strstr(s.first, "control character 0x02") != NULL, "%d: %s", n, s.first);
        snprintf(div, sizeof div, "<div " NS "><p title=\"%.*s&nbsp;x\">y</p></div>", n, pad);
        s = run_exact(div);
        cr_expect(strstr(s.first, "'&nbsp;' is not an entity") != NULL, "%d: %s", n, s.first);
        snprintf(div, sizeof div, "<div " NS "><p title='%.*s\"&amp;&#x9;\xc3\xa9'>y</p></div>", n, pad);
        s = run_exact(div);
        cr_expect_eq(s.count, 0, "%d: %s", n, s.first);
        /* '<' in a value: reported at the byte after the closing quote; without one, the value is not closed */
        int at = snprintf(div, sizeof div, "<div " NS "><p title=\"%.*s<b>\"", n, pad);
        snprintf(div + at, sizeof div - (size_t)at, ">y</p></div>");
        s = run_exact(div);
        char want[96];
        snprintf(want, sizeof want, "'<' inside an attribute value (at byte %d of the div)", at);
        cr_expect(strstr(s.first, want) != NULL, "%d: %s", n, s.first);
        snprintf(div, sizeof div, "<div " NS "><p title=\"%.*s<b>y</b></p></div>", n, pad);
        s = run_exact(div);
        cr_expect(strstr(s.first, "an attribute value is not closed") != NULL, "%d: %s", n, s.first);
        /* a script URL behind references and tabs that only decoding removes */
        snprintf(div, sizeof div, "<div " NS "><a href=\"%.*s\">x</a><a href=\"&#x20;java\tscript:%.*s\">y</a></div>",
                 n, pad, n, pad);
        s = run_exact(div);
        cr_expect(strstr(s.first, "script URLs") != NULL, "%d: %s", n, s.first);
    }
}
