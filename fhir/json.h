/*
 * fhir/json.h — a strict, fast JSON parser for FHIR resources (prefix fj_).
 *
 * Why not json-c here: the validator needs what json-c cannot give — duplicate
 * keys (json-c keeps the last silently), the byte position of every value (for
 * "line 12, column 5" in errors) and a tree small enough to validate a 50 MB
 * Bundle in well under 3x its size (json-c spends about 1 KB per JSON object).
 * json-c stays the library for *building* JSON (OperationOutcome, config).
 *
 * The tree is a flat array of 16-byte nodes in document order. A node's
 * subtree occupies `size` consecutive nodes, so the next sibling of node i is
 * i + nodes[i].size. An object's children alternate key node (FJ_STRING),
 * value node; `len` of an object is its member count, of an array its
 * element count, of a string its decoded byte length, of a number its text
 * length.
 *
 * Strings are decoded in place: the parser rewrites escape sequences inside
 * the caller's buffer (the decoded form is never longer), so a string's bytes
 * start at text + pos + 1 and are NOT NUL-terminated. Numbers keep their
 * source text (text + pos, len bytes), so decimal precision is never lost.
 *
 * Memory: fj_parse allocates doc->nodes (and a line index on demand); the
 * caller owns `text`, which must outlive the doc, and frees the doc with
 * fj_doc_free. Errors are values: fj_parse returns false and fills *err.
 */
#ifndef FHIR_JSON_H
#define FHIR_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum fj_type { FJ_NULL = 0, FJ_FALSE, FJ_TRUE, FJ_NUMBER, FJ_STRING, FJ_ARRAY, FJ_OBJECT } fj_type;

/* Node flags. */
enum {
    FJ_FLAG_DUPLICATE_KEY = 1 << 0,  /* on a key node: an earlier key of the same object has the same decoded name */
    FJ_FLAG_NUMBER_INTEGRAL = 1 << 1 /* on a number: no fraction and no exponent in its text */
};

typedef struct fj_node {
    uint8_t type;  /* fj_type */
    uint8_t flags; /* FJ_FLAG_* */
    uint16_t reserved;
    uint32_t len;  /* see file comment */
    uint32_t size; /* nodes in this subtree, including this one (>= 1) */
    uint32_t pos;  /* byte offset of the value's first character in the source */
} fj_node;

/* A field left 0 means its default. */
typedef struct fj_limits {
    size_t max_bytes;   /* documents larger than this are refused; default FJ_DEFAULT_MAX_BYTES */
    unsigned max_depth; /* nesting of arrays/objects; default FJ_DEFAULT_MAX_DEPTH */
} fj_limits;

#define FJ_DEFAULT_MAX_BYTES ((size_t)512 * 1024 * 1024) /* 512 MiB: a whole-archive Bundle still fits */
#define FJ_DEFAULT_MAX_DEPTH 128u                        /* FHIR resources nest ~20 deep; Bundles of Bundles more */

typedef struct fj_doc {
    const char *text; /* the (now decoded in place) source; owned by the caller */
    size_t text_len;
    fj_node *nodes; /* owned */
    uint32_t count; /* nodes used; nodes[0] is the root */
    uint32_t capacity;
    uint32_t *line_starts; /* owned; byte offsets of line starts, built on first fj_line_col call */
    uint32_t line_count;
} fj_doc;

typedef struct fj_error {
    bool limit;        /* a size or depth limit was exceeded (not a syntax error) */
    size_t offset;     /* byte offset where the problem was found */
    unsigned line;     /* 1-based */
    unsigned column;   /* 1-based, in bytes */
    char message[160]; /* e.g. "expected ',' or '}' after object member" */
} fj_error;

/* Default limits (max_bytes, max_depth) as above. */
fj_limits fj_default_limits(void);

/*
 * Parse text[0..len) (RFC 8259, strict: no comments, no trailing commas, no
 * leading zeros, no NaN, no control characters in strings, valid UTF-8
 * everywhere, surrogate escapes paired, exactly one top-level value with
 * only whitespace around it; a UTF-8 BOM at the start is skipped).
 * `text` is modified in place (string unescaping). limits may be NULL.
 * On success returns true and fills *doc; on failure returns false, fills
 * *err and leaves *doc empty (safe to fj_doc_free).
 */
bool fj_parse(char *text, size_t len, const fj_limits *limits, fj_doc *doc, fj_error *err);

void fj_doc_free(fj_doc *doc);

/* Access helpers. */
static inline const fj_node *fj_node_at(const fj_doc *d, uint32_t i)
{
    return &d->nodes[i];
}
static inline uint32_t fj_next(const fj_doc *d, uint32_t i)
{
    return i + d->nodes[i].size;
}
/* First child of an array/object node i (only meaningful when len > 0). */
static inline uint32_t fj_first_child(uint32_t i)
{
    return i + 1;
}
/* Bytes of a string or number node (strings: decoded, not NUL-terminated). */
static inline const char *fj_str(const fj_doc *d, uint32_t i)
{
    return d->text + d->nodes[i].pos + (d->nodes[i].type == FJ_STRING ? 1 : 0);
}
/* True when string node i equals the NUL-terminated s. */
bool fj_str_eq(const fj_doc *d, uint32_t i, const char *s);
/* How fj_equal compares numbers. */
typedef enum fj_numbers {
    FJ_NUMBERS_BY_TEXT, /* FHIR decimals keep their precision: 1.0 is not 1.00 */
    FJ_NUMBERS_BY_VALUE /* JSON's view (RFC 6902 "test"): 1.0 is 1.00 and 1 */
} fj_numbers;

/*
 * Do two values mean the same JSON? Objects compare by members in any order
 * (keys are unique in valid FHIR), arrays in order, strings by their decoded
 * bytes, numbers as `numbers` says.
 */
bool fj_equal(const fj_doc *a, uint32_t na, const fj_doc *b, uint32_t nb, fj_numbers numbers);
/* Index of the value of member `key` in object node obj, or UINT32_MAX when absent. */
uint32_t fj_get(const fj_doc *d, uint32_t obj, const char *key);
/* The same for a key of len bytes (not NUL-terminated). */
uint32_t fj_get_n(const fj_doc *d, uint32_t obj, const char *key, size_t len);
/*
 * 1-based line and column of byte offset `offset`. Builds the line index on
 * first use, so two threads must not call it on the same doc at once.
 * Columns count bytes, starting after a UTF-8 BOM.
 */
void fj_line_col(fj_doc *d, size_t offset, unsigned *line, unsigned *column);
/* Human name of a type, e.g. "object". */
const char *fj_type_name(fj_type t);

#endif
