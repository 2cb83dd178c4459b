/*
 * fhir/json_write.h — writing JSON back out of a parsed fj_doc (prefix fj_).
 *
 * The gateway stores resources as compact JSON it writes itself, rather than
 * the bytes the client sent: fj_parse decodes strings in place, so source
 * spans cannot be copied, and a canonical form gives stable ETags and
 * smaller rows. Hooks let the writer leave out members (the client's meta)
 * and replace string values (urn:uuid: references rewritten in a
 * transaction) in the same pass.
 *
 * Memory: an fj_buf owns its data (fj_buf_free, or take data and reset).
 * On allocation failure the buffer sets `failed` and stops growing.
 */
#ifndef FHIR_JSON_WRITE_H
#define FHIR_JSON_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fhir/json.h"

typedef struct fj_buf {
    char *data; /* NUL-terminated when not failed */
    size_t len, cap;
    bool failed;
} fj_buf;

void fj_buf_append(fj_buf *b, const char *s, size_t len);
void fj_buf_puts(fj_buf *b, const char *s);
void fj_buf_printf(fj_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s[0..len) as a JSON string literal, quotes included. */
void fj_buf_string(fj_buf *b, const char *s, size_t len);
/* Hand over the data (malloc'd; caller frees) and reset the buffer. NULL if writing failed. */
char *fj_buf_take(fj_buf *b, size_t *len);
void fj_buf_free(fj_buf *b);

typedef struct fj_write_hooks {
    /* Leave out member `key` (a key node) of object `obj`? NULL = keep all. */
    bool (*skip_member)(void *ctx, const fj_doc *doc, uint32_t obj, uint32_t key);
    /* A replacement for string node `node` (bytes + length), or NULL to keep it. */
    const char *(*replace_string)(void *ctx, const fj_doc *doc, uint32_t node, size_t *len);
    void *ctx;
} fj_write_hooks;

/* Write node (and its subtree) compactly. hooks may be NULL. */
void fj_write(const fj_doc *doc, uint32_t node, const fj_write_hooks *hooks, fj_buf *out);

/* Write the members of object node (no braces), comma-separated; returns how many were written. */
size_t fj_write_members(const fj_doc *doc, uint32_t obj, const fj_write_hooks *hooks, fj_buf *out);

#endif
