/*
 * fhir/xhtml.h — checks of a Narrative.div (prefix fx_).
 *
 * Receivers render narrative as HTML, so what reaches them must be the
 * small, inert XHTML subset that R4 allows (narrative.html):
 *
 *   - well-formed XML: tags nest and close, attributes are quoted and not
 *     repeated, only the five XML entities (&lt; &gt; &amp; &quot; &apos;)
 *     and character references naming an XML character; no DOCTYPE (it could
 *     define entities) and no processing instructions;
 *   - the root is one `div` declaring xmlns="http://www.w3.org/1999/xhtml",
 *     and any inner default namespace is the same one;
 *   - txt-1: only the basic HTML formatting elements and their attributes
 *     (the list the HL7 validator uses; script, style, iframe, object, form
 *     and every `on...` event handler attribute fall outside it), no block
 *     element (div, p, table, ul, ol, blockquote) inside a `p`;
 *   - txt-2: some non-whitespace content (text, or an image): a warning, as
 *     the HL7 validator has it (four official examples have empty divs);
 *   - no active URLs: `javascript:`, `vbscript:` and `data:` (except inline
 *     raster images) in href/src/cite/longdesc, also when obfuscated with
 *     character references or embedded whitespace; nor script in `style`;
 *   - internal references: `<img src="#x">` and `href="#x"` should name an
 *     id inside the narrative or, through the caller's callback, in the
 *     resource (a contained Binary, an element id); unresolved ones are
 *     warnings (the HL7 validator checks only the scheme, and an official
 *     example, Media-sound, has a dangling image).
 *
 * The checker is one loop over the bytes with an explicit element stack:
 * no recursion, nothing allocated, nothing read past `len`. Input larger
 * than max_bytes is refused unread; nesting deeper than max_depth stops the
 * check with an error. At most FX_MAX_REPORTS problems are reported per div
 * (the rest are counted). It runs on every div of every request, so text
 * is skipped a word at a time and names are looked up in a hash table
 * (built once, on the first call); bench/xhtml.c measures it.
 *
 * Memory: nothing is kept; messages passed to the callback live only for
 * the call. Thread-safe.
 */
#ifndef FHIR_XHTML_H
#define FHIR_XHTML_H

#include <stdbool.h>
#include <stddef.h>

#include "fhir/outcome.h"

#define FX_DEFAULT_MAX_BYTES (4u * 1024u * 1024u) /* the spec's own pages reach 1.8 MB */
#define FX_DEFAULT_MAX_DEPTH 64u
#define FX_MAX_DEPTH_CAP 256u /* the element stack's size; max_depth is clamped to it */
#define FX_MAX_REPORTS 20u

/* One problem: severity, an OO_* code, and a message (valid during the call only). */
typedef void (*fx_report_fn)(void *ctx, oo_severity sev, const char *code, const char *message);

typedef struct fx_options {
    size_t max_bytes;   /* 0 = FX_DEFAULT_MAX_BYTES */
    unsigned max_depth; /* 0 = FX_DEFAULT_MAX_DEPTH */
    /* Does the resource hold an id (contained resource, element id) for "#id"? NULL = no. */
    bool (*local_id_exists)(void *ctx, const char *id, size_t len);
    void *id_ctx;
} fx_options;

/* Check s[0..len) (the JSON-decoded div). opts may be NULL. Returns the number of errors found. */
size_t fx_check(const char *s, size_t len, const fx_options *opts, fx_report_fn report, void *report_ctx);

/*
 * Text that is not narrative (a string, markdown) but would be rendered:
 * the offset of the first thing that looks like an HTML tag ("<b>", "</p",
 * "<img src=", "<!--"), or len when there is none. "a < b", "<5 mg" and
 * "<<" are not tags.
 */
size_t fx_find_tag(const char *s, size_t len);

/*
 * The offset of the first markdown link or image target, [text](url) or
 * <url>, whose URL is active (javascript:, vbscript:, data: other than a
 * raster image), or len when there is none.
 */
size_t fx_find_active_link(const char *s, size_t len);

#endif
