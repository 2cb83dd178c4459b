/*
 * fhir/json_write.c — compact JSON output from an fj_doc (see json_write.h).
 */
#include "fhir/json_write.h"

#include "fhir/array.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool reserve(fj_buf *b, size_t more)
{
    if (b->failed)
        return false;
    /* a resource is rarely tiny: start at 256 bytes rather than fa_reserve's first 8 */
    size_t need = b->len + more + 1;
    if (need < b->len || !fa_reserve(&b->data, &b->cap, need < 256 ? 256 : need, 1)) {
        b->failed = true;
        return false;
    }
    return true;
}

void fj_buf_append(fj_buf *b, const char *s, size_t len)
{
    if (!reserve(b, len))
        return;
    memcpy(b->data + b->len, s, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void fj_buf_puts(fj_buf *b, const char *s)
{
    fj_buf_append(b, s, strlen(s));
}

void fj_buf_printf(fj_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* 0x01 and 0x80 in each byte of a 64-bit word: the word-at-a-time tests of safe_run below. */
#define ONES UINT64_C(0x0101010101010101)
#define HIGHS (ONES * 0x80)

/* Whether any byte of w is below 0x20, '"' or '\\': the bytes JSON output must escape. */
static bool word_needs_escape(uint64_t w)
{
    uint64_t quote = w ^ (ONES * '"'), slash = w ^ (ONES * '\\');
    /* (x - ONES) & ~x & HIGHS is nonzero exactly when some byte of x is zero; with 0x20 for ONES, below 0x20 */
    uint64_t below = (w - ONES * 0x20) & ~w;
    return ((below | ((quote - ONES) & ~quote) | ((slash - ONES) & ~slash)) & HIGHS) != 0;
}

/*
 * The length of the run of s (len bytes) from i on that needs no escaping.
 * Narrative XHTML makes strings of tens of kilobytes, so this looks at eight
 * bytes at a time and copies the run with one memcpy rather than testing each byte.
 */
static size_t safe_run(const char *s, size_t i, size_t len)
{
    size_t start = i;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (word_needs_escape(w))
            break;
    }
    for (; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == '"' || c == '\\')
            break;
    }
    return i - start;
}

void fj_buf_string(fj_buf *b, const char *s, size_t len)
{
    if (!reserve(b, len + 2))
        return;
    b->data[b->len++] = '"';
    for (size_t i = 0; i < len;) {
        size_t run = safe_run(s, i, len);
        fj_buf_append(b, s + i, run);
        i += run;
        if (i == len)
            break;
        unsigned char c = (unsigned char)s[i++];
        switch (c) {
        case '"': fj_buf_append(b, "\\\"", 2); break;
        case '\\': fj_buf_append(b, "\\\\", 2); break;
        case '\n': fj_buf_append(b, "\\n", 2); break;
        case '\r': fj_buf_append(b, "\\r", 2); break;
        case '\t': fj_buf_append(b, "\\t", 2); break;
        default: fj_buf_printf(b, "\\u%04x", c); break;
        }
    }
    fj_buf_append(b, "\"", 1);
}

char *fj_buf_take(fj_buf *b, size_t *len)
{
    if (b->failed) {
        fj_buf_free(b);
        return NULL;
    }
    /* an empty buffer still hands over a valid empty string: reserve() alone leaves the new block unwritten */
    if (!b->data) {
        if (!reserve(b, 0))
            return NULL;
        b->data[0] = '\0';
    }
    char *data = b->data;
    if (len)
        *len = b->len;
    memset(b, 0, sizeof *b);
    return data;
}

void fj_buf_free(fj_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

size_t fj_write_members(const fj_doc *doc, uint32_t obj, const fj_write_hooks *hooks, fj_buf *out)
{
    size_t written = 0;
    uint32_t key = obj + 1;
    for (uint32_t m = 0; m < doc->nodes[obj].len; m++, key = fj_next(doc, key + 1)) {
        if (hooks && hooks->skip_member && hooks->skip_member(hooks->ctx, doc, obj, key))
            continue;
        if (written++)
            fj_buf_append(out, ",", 1);
        fj_buf_string(out, fj_str(doc, key), doc->nodes[key].len);
        fj_buf_append(out, ":", 1);
        fj_write(doc, key + 1, hooks, out);
    }
    return written;
}

void fj_write(const fj_doc *doc, uint32_t node, const fj_write_hooks *hooks, fj_buf *out)
{
    const fj_node *n = &doc->nodes[node];
    switch (n->type) {
    case FJ_NULL: fj_buf_append(out, "null", 4); break;
    case FJ_TRUE: fj_buf_append(out, "true", 4); break;
    case FJ_FALSE: fj_buf_append(out, "false", 5); break;
    case FJ_NUMBER: fj_buf_append(out, fj_str(doc, node), n->len); break;
    case FJ_STRING: {
        size_t len = n->len;
        const char *s = hooks && hooks->replace_string ? hooks->replace_string(hooks->ctx, doc, node, &len) : NULL;
        fj_buf_string(out, s ? s : fj_str(doc, node), s ? len : n->len);
        break;
    }
    case FJ_ARRAY: {
        fj_buf_append(out, "[", 1);
        uint32_t item = node + 1;
        for (uint32_t i = 0; i < n->len; i++, item = fj_next(doc, item)) {
            if (i)
                fj_buf_append(out, ",", 1);
            fj_write(doc, item, hooks, out);
        }
        fj_buf_append(out, "]", 1);
        break;
    }
    case FJ_OBJECT:
        fj_buf_append(out, "{", 1);
        fj_write_members(doc, node, hooks, out);
        fj_buf_append(out, "}", 1);
        break;
    }
}
