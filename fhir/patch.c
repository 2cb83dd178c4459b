/*
 * fhir/patch.c — JSON Patch and FHIRPath Patch (see patch.h).
 *
 * Every operation becomes a small list of edits on the current parsed
 * document (replace a node, remove a node, insert into an array, add a
 * member to an object); writing the document with its edits gives the next
 * document's text. The original resource and the patch are never changed.
 */
#include "fhir/patch.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/json_write.h"

#define NONE UINT32_MAX
#define MAX_EDITS 4

/* ---- errors ---- */

static bool fail(fpatch_error *err, bool malformed, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(fpatch_error *err, bool malformed, const char *fmt, ...)
{
    err->malformed = malformed;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return false;
}

static void error_reset(fpatch_error *err)
{
    memset(err, 0, sizeof *err);
    err->op = -1;
}

/* ---- the working document ---- */

typedef struct work {
    char *text; /* the current document (owned) */
    size_t len;
    char *scratch; /* the copy `doc` was parsed from (fj_parse decodes in place) */
    fj_doc doc;
    bool parsed;
    size_t max_len; /* the original length + FPATCH_MAX_GROWTH */
} work;

static void work_unload(work *w)
{
    if (w->parsed)
        fj_doc_free(&w->doc);
    free(w->scratch);
    w->scratch = NULL;
    w->parsed = false;
}

static void work_free(work *w)
{
    work_unload(w);
    free(w->text);
    w->text = NULL;
}

/* Parse the current text into w->doc. */
static bool work_load(work *w, fpatch_error *err)
{
    work_unload(w);
    w->scratch = malloc(w->len + 1);
    if (!w->scratch)
        return fail(err, false, "out of memory");
    memcpy(w->scratch, w->text, w->len + 1);
    fj_error e;
    if (!fj_parse(w->scratch, w->len, NULL, &w->doc, &e)) {
        fj_doc_free(&w->doc);
        return fail(err, false, "the patched document is not JSON: %s", e.message);
    }
    w->parsed = true;
    return true;
}

/* Take b's text as the current document. */
static bool work_take(work *w, fj_buf *b, fpatch_error *err)
{
    size_t len;
    char *text = fj_buf_take(b, &len);
    if (!text)
        return fail(err, false, "out of memory");
    if (w->max_len && len > w->max_len) {
        free(text);
        return fail(err, false, "the patched document would grow by more than %zu bytes", FPATCH_MAX_GROWTH);
    }
    free(w->text);
    w->text = text;
    w->len = len;
    return true;
}

static bool work_init(work *w, const fj_doc *resource, fpatch_error *err)
{
    memset(w, 0, sizeof *w);
    fj_buf b = {0};
    fj_write(resource, 0, NULL, &b);
    bool ok = work_take(w, &b, err);
    w->max_len = w->len + FPATCH_MAX_GROWTH;
    return ok && work_load(w, err);
}

/* ---- edits and the writer ---- */

typedef enum ed_kind { ED_REPLACE, ED_REMOVE, ED_INSERT, ED_ADD_MEMBER } ed_kind;

typedef struct edit {
    ed_kind kind;
    uint32_t node;   /* REPLACE, REMOVE: the target; INSERT: the array; ADD_MEMBER: the object */
    uint32_t index;  /* INSERT: before the element at this position (== length: append) */
    const char *key; /* ADD_MEMBER: the member's name; REPLACE: a new member name, or NULL to keep it */
    size_t key_len;
    const char *value; /* REPLACE, INSERT, ADD_MEMBER: JSON text */
    size_t value_len;
} edit;

typedef struct edits {
    edit e[MAX_EDITS];
    size_t n;
} edits;

static const edit *find_edit(const edits *es, ed_kind kind, uint32_t node)
{
    for (size_t i = 0; es && i < es->n; i++)
        if (es->e[i].kind == kind && es->e[i].node == node)
            return &es->e[i];
    return NULL;
}

static void buf_truncate(fj_buf *b, size_t len)
{
    if (!b->failed && b->data) {
        b->len = len;
        b->data[len] = '\0';
    }
}

static bool write_node(const fj_doc *d, uint32_t node, const edits *es, bool prune, fj_buf *out);

static void write_inserts(const edits *es, uint32_t array, uint32_t at, size_t *written, fj_buf *out)
{
    for (size_t i = 0; es && i < es->n; i++) {
        const edit *e = &es->e[i];
        if (e->kind != ED_INSERT || e->node != array || e->index != at)
            continue;
        if ((*written)++)
            fj_buf_puts(out, ",");
        fj_buf_append(out, e->value, e->value_len);
    }
}

/* Writes a child (array element or member value); false when it was pruned (nothing written). */
static bool write_child(const fj_doc *d, uint32_t child, const edits *es, bool prune, fj_buf *out)
{
    const edit *rep = find_edit(es, ED_REPLACE, child);
    if (rep) {
        fj_buf_append(out, rep->value, rep->value_len);
        return true;
    }
    return write_node(d, child, es, prune, out);
}

static size_t write_array(const fj_doc *d, uint32_t node, const edits *es, bool prune, fj_buf *out)
{
    size_t written = 0;
    uint32_t c = node + 1, len = d->nodes[node].len;
    fj_buf_puts(out, "[");
    for (uint32_t k = 0; k <= len; k++) {
        write_inserts(es, node, k, &written, out);
        if (k == len)
            break;
        if (!find_edit(es, ED_REMOVE, c)) {
            size_t mark = out->len;
            if (written)
                fj_buf_puts(out, ",");
            if (write_child(d, c, es, prune, out))
                written++;
            else
                buf_truncate(out, mark);
        }
        c = fj_next(d, c);
    }
    fj_buf_puts(out, "]");
    return written;
}

static size_t write_object(const fj_doc *d, uint32_t node, const edits *es, bool prune, fj_buf *out)
{
    size_t written = 0;
    uint32_t key = node + 1, len = d->nodes[node].len;
    fj_buf_puts(out, "{");
    for (uint32_t m = 0; m < len; m++, key = fj_next(d, key + 1)) {
        uint32_t value = key + 1;
        if (find_edit(es, ED_REMOVE, value))
            continue;
        const edit *rep = find_edit(es, ED_REPLACE, value);
        size_t mark = out->len;
        if (written)
            fj_buf_puts(out, ",");
        if (rep && rep->key)
            fj_buf_string(out, rep->key, rep->key_len);
        else
            fj_buf_string(out, fj_str(d, key), d->nodes[key].len);
        fj_buf_puts(out, ":");
        if (write_child(d, value, es, prune, out))
            written++;
        else
            buf_truncate(out, mark);
    }
    for (size_t i = 0; es && i < es->n; i++) {
        const edit *e = &es->e[i];
        if (e->kind != ED_ADD_MEMBER || e->node != node)
            continue;
        if (written++)
            fj_buf_puts(out, ",");
        fj_buf_string(out, e->key, e->key_len);
        fj_buf_puts(out, ":");
        fj_buf_append(out, e->value, e->value_len);
    }
    fj_buf_puts(out, "}");
    return written;
}

/*
 * Write node with the edits applied. With prune, an array or object (not
 * the root) that ends up empty is left out: false tells the caller to drop
 * its member or element too.
 */
static bool write_node(const fj_doc *d, uint32_t node, const edits *es, bool prune, fj_buf *out)
{
    uint8_t type = d->nodes[node].type;
    if (type != FJ_ARRAY && type != FJ_OBJECT) {
        fj_write(d, node, NULL, out);
        return true;
    }
    size_t start = out->len;
    size_t n = type == FJ_ARRAY ? write_array(d, node, es, prune, out) : write_object(d, node, es, prune, out);
    if (prune && n == 0 && node != 0) {
        buf_truncate(out, start);
        return false;
    }
    return true;
}

/* Apply es to the working document: it becomes the next document. */
static bool work_apply(work *w, const edits *es, fpatch_error *err)
{
    fj_buf b = {0};
    const edit *root = find_edit(es, ED_REPLACE, 0);
    if (root)
        fj_buf_append(&b, root->value, root->value_len);
    else
        write_node(&w->doc, 0, es, false, &b);
    return work_take(w, &b, err) && work_load(w, err);
}

/* The final document: empty containers pruned; the text is handed to the caller. */
static char *work_finish(work *w, size_t *len, fpatch_error *err)
{
    fj_buf b = {0};
    write_node(&w->doc, 0, NULL, true, &b);
    char *text = fj_buf_take(&b, len);
    if (!text)
        fail(err, false, "out of memory");
    work_free(w);
    return text;
}

/* ---- small tree helpers ---- */

/* The value of member key[0..len) of object obj, or NONE (keys may hold any bytes, so no fj_get). */
static uint32_t member(const fj_doc *d, uint32_t obj, const char *key, size_t len)
{
    if (d->nodes[obj].type != FJ_OBJECT)
        return NONE;
    uint32_t k = obj + 1;
    for (uint32_t m = 0; m < d->nodes[obj].len; m++, k = fj_next(d, k + 1))
        if (d->nodes[k].len == len && !memcmp(fj_str(d, k), key, len))
            return k + 1;
    return NONE;
}

static uint32_t element_at(const fj_doc *d, uint32_t array, uint32_t index)
{
    uint32_t c = array + 1;
    for (uint32_t i = 0; i < index; i++)
        c = fj_next(d, c);
    return c;
}

/* The array or object that holds node (NONE for the root); nodes carry no parent link, so walk down. */
static uint32_t parent_of(const fj_doc *d, uint32_t node)
{
    uint32_t cur = 0;
    while (cur != node) {
        uint8_t type = d->nodes[cur].type;
        if (type != FJ_ARRAY && type != FJ_OBJECT)
            return NONE;
        uint32_t c = cur + 1, next = NONE;
        for (uint32_t i = 0; i < d->nodes[cur].len && next == NONE; i++) {
            uint32_t v = type == FJ_OBJECT ? c + 1 : c;
            if (v == node)
                return cur;
            if (node > v && node < v + d->nodes[v].size)
                next = v;
            c = fj_next(d, v);
        }
        if (next == NONE)
            return NONE;
        cur = next;
    }
    return NONE;
}

/* Compact JSON of a node of another document, e.g. a patch's value (caller frees). */
static char *node_text(const fj_doc *d, uint32_t node, size_t *len)
{
    fj_buf b = {0};
    fj_write(d, node, NULL, &b);
    return fj_buf_take(&b, len);
}

/* ---- JSON Pointer (RFC 6901) ---- */

typedef struct pointer {
    uint32_t parent; /* the container of the last token; NONE when the pointer names the root */
    uint32_t node;   /* the node named; NONE when absent (only the last token may be) */
    uint32_t index;  /* parent an array: the position the last token names ("-": the length) */
    char *key;       /* parent an object: the last token, unescaped (owned) */
    size_t key_len;
} pointer;

static void pointer_free(pointer *p)
{
    free(p->key);
    p->key = NULL;
}

/* The token at s[0..len) unescaped into out (which holds len + 1 bytes); false on a bad '~' escape. */
static bool unescape(const char *s, size_t len, char *out, size_t *out_len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '~') {
            out[n++] = s[i];
            continue;
        }
        if (i + 1 == len || (s[i + 1] != '0' && s[i + 1] != '1'))
            return false;
        out[n++] = s[++i] == '0' ? '~' : '/';
    }
    out[n] = '\0';
    *out_len = n;
    return true;
}

/* An array index token: "0" or digits without a leading zero, below 2^31. */
static bool parse_index(const char *t, size_t len, uint32_t *index)
{
    if (len == 0 || len > 9 || (len > 1 && t[0] == '0'))
        return false;
    uint32_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (t[i] < '0' || t[i] > '9')
            return false;
        v = v * 10 + (uint32_t)(t[i] - '0');
    }
    *index = v;
    return true;
}

/* One step from container cur by token t; sets p for the last token. */
static bool step(const fj_doc *d, uint32_t cur, const char *t, size_t len, bool last, pointer *p, fpatch_error *err)
{
    uint8_t type = d->nodes[cur].type;
    uint32_t next = NONE;
    if (type == FJ_OBJECT) {
        next = member(d, cur, t, len);
    } else if (type == FJ_ARRAY) {
        uint32_t index;
        if (last && len == 1 && t[0] == '-')
            index = d->nodes[cur].len;
        else if (!parse_index(t, len, &index))
            return fail(err, false, "'%.*s' is not an array index", (int)len, t);
        if (index > d->nodes[cur].len || (!last && index == d->nodes[cur].len))
            return fail(err, false, "index %u is out of range (the array has %u elements)", index, d->nodes[cur].len);
        p->index = index;
        next = index < d->nodes[cur].len ? element_at(d, cur, index) : NONE;
    } else {
        return fail(err, false, "'%.*s' goes into a %s, which has no members", (int)len, t,
                    fj_type_name((fj_type)type));
    }
    if (last) {
        p->parent = cur;
        p->node = next;
        return true;
    }
    if (next == NONE)
        return fail(err, false, "'%.*s' does not exist", (int)len, t);
    p->node = next;
    return true;
}

static bool resolve(const fj_doc *d, const char *ptr, size_t len, pointer *p, fpatch_error *err)
{
    memset(p, 0, sizeof *p);
    p->parent = NONE;
    p->node = 0;
    if (len == 0)
        return true;
    if (ptr[0] != '/')
        return fail(err, true, "a JSON Pointer starts with '/' (or is empty for the whole document)");
    p->key = malloc(len + 1);
    if (!p->key)
        return fail(err, false, "out of memory");
    uint32_t cur = 0;
    const char *s = ptr + 1, *end = ptr + len;
    for (;;) {
        const char *slash = memchr(s, '/', (size_t)(end - s));
        const char *tend = slash ? slash : end;
        if (!unescape(s, (size_t)(tend - s), p->key, &p->key_len))
            return fail(err, true, "'~' must be followed by 0 or 1 in a JSON Pointer");
        if (!step(d, cur, p->key, p->key_len, !slash, p, err))
            return false;
        if (!slash)
            return true;
        cur = p->node;
        s = slash + 1;
    }
}

/* ---- JSON Patch ---- */

typedef struct jp_op {
    uint32_t node; /* the operation object */
    const char *name;
    const char *path, *from;
    size_t path_len, from_len;
    uint32_t value; /* in the patch doc, NONE when absent */
} jp_op;

static const char *const jp_names[] = {"add", "remove", "replace", "move", "copy", "test"};

static bool string_member(const fj_doc *d, uint32_t obj, const char *key, const char **s, size_t *len)
{
    uint32_t v = fj_get(d, obj, key);
    if (v == NONE || d->nodes[v].type != FJ_STRING)
        return false;
    *s = fj_str(d, v);
    *len = d->nodes[v].len;
    return true;
}

/* Read operation i (an object) into op; false (malformed) when a member it needs is missing. */
static bool jp_read(const fj_doc *p, uint32_t node, jp_op *op, fpatch_error *err)
{
    memset(op, 0, sizeof *op);
    op->node = node;
    op->value = NONE;
    if (p->nodes[node].type != FJ_OBJECT)
        return fail(err, true, "an operation must be an object");
    uint32_t k = node + 1;
    for (uint32_t m = 0; m < p->nodes[node].len; m++, k = fj_next(p, k + 1))
        if (p->nodes[k].flags & FJ_FLAG_DUPLICATE_KEY) /* RFC 6902 A.13: which "op" would be meant? */
            return fail(err, true, "the operation has member \"%.*s\" twice", (int)p->nodes[k].len, fj_str(p, k));
    const char *name;
    size_t name_len;
    if (!string_member(p, node, "op", &name, &name_len))
        return fail(err, true, "an operation needs \"op\" (a string)");
    for (size_t i = 0; i < sizeof jp_names / sizeof *jp_names; i++)
        if (strlen(jp_names[i]) == name_len && !memcmp(jp_names[i], name, name_len))
            op->name = jp_names[i];
    snprintf(err->op_name, sizeof err->op_name, "%.*s", (int)(name_len < 15 ? name_len : 15), name);
    if (!op->name)
        return fail(err, true, "unknown op '%.*s' (add, remove, replace, move, copy or test)", (int)name_len, name);
    if (!string_member(p, node, "path", &op->path, &op->path_len))
        return fail(err, true, "%s needs \"path\" (a string)", op->name);
    snprintf(err->path, sizeof err->path, "%.*s", (int)op->path_len, op->path);
    op->value = fj_get(p, node, "value");
    bool needs_value = !strcmp(op->name, "add") || !strcmp(op->name, "replace") || !strcmp(op->name, "test");
    bool needs_from = !strcmp(op->name, "move") || !strcmp(op->name, "copy");
    if (needs_value && op->value == NONE)
        return fail(err, true, "%s needs \"value\"", op->name);
    if (needs_from && !string_member(p, node, "from", &op->from, &op->from_len))
        return fail(err, true, "%s needs \"from\" (a string)", op->name);
    return true;
}

/* add (RFC 6902 4.1): value text at ptr in the working document. */
static bool jp_add(work *w, const char *ptr, size_t ptr_len, const char *value, size_t value_len, fpatch_error *err)
{
    pointer p;
    bool ok = resolve(&w->doc, ptr, ptr_len, &p, err);
    edits es = {.n = 1};
    edit *e = &es.e[0];
    e->value = value;
    e->value_len = value_len;
    if (ok && p.parent == NONE) {
        e->kind = ED_REPLACE, e->node = 0;
    } else if (ok && w->doc.nodes[p.parent].type == FJ_ARRAY) {
        e->kind = ED_INSERT, e->node = p.parent, e->index = p.index;
    } else if (ok && p.node != NONE) {
        e->kind = ED_REPLACE, e->node = p.node;
    } else if (ok) {
        e->kind = ED_ADD_MEMBER, e->node = p.parent, e->key = p.key, e->key_len = p.key_len;
    }
    ok = ok && work_apply(w, &es, err);
    pointer_free(&p);
    return ok;
}

/* The node ptr names in the working document, which must exist; *p for the caller to free. */
static bool jp_existing(work *w, const char *ptr, size_t len, pointer *p, fpatch_error *err)
{
    const fj_doc *d = &w->doc;
    if (!resolve(d, ptr, len, p, err))
        return false;
    if (p->node == NONE && d->nodes[p->parent].type == FJ_ARRAY && p->key_len == 1 && p->key[0] == '-')
        return fail(err, false, "'-' (after the last element) does not exist");
    if (p->node == NONE && d->nodes[p->parent].type == FJ_ARRAY)
        return fail(err, false, "index %u is out of range (the array has %u elements)", p->index,
                    d->nodes[p->parent].len);
    if (p->node == NONE)
        return fail(err, false, "'%.*s' does not exist", (int)p->key_len, p->key);
    return true;
}

static bool jp_remove(work *w, const char *ptr, size_t len, fpatch_error *err)
{
    pointer p;
    bool ok = jp_existing(w, ptr, len, &p, err);
    if (ok && p.parent == NONE)
        ok = fail(err, false, "the whole document cannot be removed");
    edits es = {.n = 1, .e = {{.kind = ED_REMOVE, .node = p.node}}};
    ok = ok && work_apply(w, &es, err);
    pointer_free(&p);
    return ok;
}

static bool jp_replace(work *w, const jp_op *op, const fj_doc *patch, fpatch_error *err)
{
    pointer p;
    size_t vlen = 0; /* read into the edit below even when the path failed */
    char *value = NULL;
    bool ok = jp_existing(w, op->path, op->path_len, &p, err);
    if (ok && !(value = node_text(patch, op->value, &vlen)))
        ok = fail(err, false, "out of memory");
    edits es = {.n = 1, .e = {{.kind = ED_REPLACE, .node = p.node, .value = value, .value_len = vlen}}};
    ok = ok && work_apply(w, &es, err);
    pointer_free(&p);
    free(value);
    return ok;
}

/* move and copy: the value at from, then (move) removed, then added at path. */
static bool jp_move_copy(work *w, const jp_op *op, bool move, fpatch_error *err)
{
    if (move && op->path_len > op->from_len && !memcmp(op->path, op->from, op->from_len) &&
        op->path[op->from_len] == '/')
        return fail(err, false, "a value cannot be moved into one of its own children");
    if (move && op->path_len == op->from_len && !memcmp(op->path, op->from, op->from_len))
        return true;
    pointer p;
    bool ok = jp_existing(w, op->from, op->from_len, &p, err);
    size_t vlen = 0;
    char *value = ok ? node_text(&w->doc, p.node, &vlen) : NULL;
    pointer_free(&p);
    if (ok && !value)
        ok = fail(err, false, "out of memory");
    ok = ok && (!move || jp_remove(w, op->from, op->from_len, err));
    ok = ok && jp_add(w, op->path, op->path_len, value, vlen, err);
    free(value);
    return ok;
}

static bool jp_test(work *w, const jp_op *op, const fj_doc *patch, fpatch_error *err)
{
    pointer p;
    bool ok = jp_existing(w, op->path, op->path_len, &p, err);
    pointer_free(&p);
    if (ok && !fj_equal(&w->doc, p.node, patch, op->value, FJ_NUMBERS_BY_VALUE) /* RFC 6902 4.6 */) {
        size_t len;
        char *have = node_text(&w->doc, p.node, &len);
        ok = fail(err, false, "test failed: the value is %.120s", have ? have : "(out of memory)");
        free(have);
    }
    return ok;
}

static bool jp_apply(work *w, const jp_op *op, const fj_doc *patch, fpatch_error *err)
{
    if (!strcmp(op->name, "add") || !strcmp(op->name, "remove")) {
        if (op->name[0] == 'r')
            return jp_remove(w, op->path, op->path_len, err);
        size_t vlen;
        char *value = node_text(patch, op->value, &vlen);
        bool ok = value ? jp_add(w, op->path, op->path_len, value, vlen, err) : fail(err, false, "out of memory");
        free(value);
        return ok;
    }
    if (!strcmp(op->name, "replace"))
        return jp_replace(w, op, patch, err);
    if (!strcmp(op->name, "test"))
        return jp_test(w, op, patch, err);
    return jp_move_copy(w, op, !strcmp(op->name, "move"), err);
}

char *fpatch_json_patch(const fj_doc *resource, const fj_doc *patch, size_t *len, fpatch_error *err)
{
    error_reset(err);
    if (patch->nodes[0].type != FJ_ARRAY) {
        fail(err, true, "a JSON Patch is an array of operations");
        return NULL;
    }
    if (patch->nodes[0].len > FPATCH_MAX_OPERATIONS) {
        fail(err, true, "a patch has at most %u operations", FPATCH_MAX_OPERATIONS);
        return NULL;
    }
    work w;
    if (!work_init(&w, resource, err)) {
        work_free(&w);
        return NULL;
    }
    uint32_t node = 1;
    for (uint32_t i = 0; i < patch->nodes[0].len; i++, node = fj_next(patch, node)) {
        err->op = (int)i;
        err->op_name[0] = err->path[0] = '\0';
        jp_op op;
        if (!jp_read(patch, node, &op, err) || !jp_apply(&w, &op, patch, err)) {
            work_free(&w);
            return NULL;
        }
    }
    error_reset(err);
    return work_finish(&w, len, err);
}

/* ---- FHIRPath Patch ---- */

typedef struct fhp_ctx {
    const fs_schema *schema;
    fp_arena *arena;
    const fj_doc *patch;
    work w;
} fhp_ctx;

/* One operation's parts (nodes of the patch doc; NONE when absent). */
typedef struct fhp_op {
    char type[16];
    char *path; /* NUL-terminated copy for fp_compile */
    uint32_t name, value, index, source, destination;
} fhp_op;

/* The value[x] member of a part: its value node, and the type suffix of its key ("Code"). */
static uint32_t part_value_x(const fj_doc *p, uint32_t part, const char **suffix, size_t *suffix_len)
{
    uint32_t k = part + 1;
    for (uint32_t m = 0; m < p->nodes[part].len; m++, k = fj_next(p, k + 1)) {
        if (p->nodes[k].len > 5 && !memcmp(fj_str(p, k), "value", 5)) {
            *suffix = fj_str(p, k) + 5;
            *suffix_len = p->nodes[k].len - 5;
            return k + 1;
        }
    }
    return NONE;
}

static bool part_name_is(const fj_doc *p, uint32_t part, const char *name)
{
    uint32_t n = p->nodes[part].type == FJ_OBJECT ? fj_get(p, part, "name") : NONE;
    return n != NONE && p->nodes[n].type == FJ_STRING && fj_str_eq(p, n, name);
}

static bool integer_of(const fj_doc *p, uint32_t part, uint32_t *out)
{
    uint32_t v = fj_get(p, part, "valueInteger");
    if (v == NONE || p->nodes[v].type != FJ_NUMBER || !(p->nodes[v].flags & FJ_FLAG_NUMBER_INTEGRAL))
        return false;
    return parse_index(fj_str(p, v), p->nodes[v].len, out);
}

static bool fhp_read_part(const fj_doc *p, uint32_t part, fhp_op *op, fpatch_error *err)
{
    const char *s;
    size_t len;
    if (part_name_is(p, part, "type")) {
        if (!string_member(p, part, "valueCode", &s, &len))
            return fail(err, true, "the type part needs valueCode");
        snprintf(op->type, sizeof op->type, "%.*s", (int)(len < 15 ? len : 15), s);
        snprintf(err->op_name, sizeof err->op_name, "%s", op->type);
    } else if (part_name_is(p, part, "path")) {
        if (!string_member(p, part, "valueString", &s, &len) || memchr(s, '\0', len))
            return fail(err, true, "the path part needs valueString");
        free(op->path);
        if (!(op->path = strndup(s, len)))
            return fail(err, false, "out of memory");
        snprintf(err->path, sizeof err->path, "%s", op->path);
    } else if (part_name_is(p, part, "name")) {
        op->name = fj_get(p, part, "valueString");
        if (op->name == NONE || p->nodes[op->name].type != FJ_STRING || !p->nodes[op->name].len)
            return fail(err, true, "the name part needs valueString");
    } else if (part_name_is(p, part, "value")) {
        op->value = part;
    } else if (part_name_is(p, part, "index") || part_name_is(p, part, "source") ||
               part_name_is(p, part, "destination")) {
        uint32_t *slot = part_name_is(p, part, "index")    ? &op->index
                         : part_name_is(p, part, "source") ? &op->source
                                                           : &op->destination;
        if (!integer_of(p, part, slot))
            return fail(err, true, "index, source and destination need valueInteger (0 or more)");
    } else {
        return fail(err, true, "unknown part (type, path, name, value, index, source or destination)");
    }
    return true;
}

static bool fhp_read(const fj_doc *p, uint32_t param, fhp_op *op, fpatch_error *err)
{
    memset(op, 0, sizeof *op);
    op->name = op->value = op->index = op->source = op->destination = NONE;
    if (!part_name_is(p, param, "operation"))
        return fail(err, true, "every parameter of a FHIRPath Patch is named \"operation\"");
    uint32_t parts = fj_get(p, param, "part");
    if (parts == NONE || p->nodes[parts].type != FJ_ARRAY)
        return fail(err, true, "an operation needs parts (type, path, ...)");
    uint32_t part = parts + 1;
    for (uint32_t i = 0; i < p->nodes[parts].len; i++, part = fj_next(p, part))
        if (!fhp_read_part(p, part, op, err))
            return false;
    if (!op->type[0] || !op->path)
        return fail(err, true, "an operation needs a type and a path");
    bool add = !strcmp(op->type, "add"), insert = !strcmp(op->type, "insert"), replace = !strcmp(op->type, "replace"),
         move = !strcmp(op->type, "move");
    if (!add && !insert && !replace && !move && strcmp(op->type, "delete"))
        return fail(err, true, "unknown type '%s' (add, insert, delete, replace or move)", op->type);
    if ((add || insert || replace) && op->value == NONE)
        return fail(err, true, "%s needs a value", op->type);
    if (add && op->name == NONE)
        return fail(err, true, "add needs a name");
    if (insert && op->index == NONE)
        return fail(err, true, "insert needs an index");
    if (move && (op->source == NONE || op->destination == NONE))
        return fail(err, true, "move needs a source and a destination");
    return true;
}

/* The children of the element an item stands for (NULL, 0 when unknown). */
static const fs_element *item_children(const fs_schema *s, const fp_item *it, unsigned *n)
{
    *n = 0;
    const fs_element *el = it->u.node.element;
    if (!el && it->u.node.type)
        el = &s->elements[it->u.node.type->root];
    return el ? fs_children(s, el, n) : NULL;
}

static const fs_element *child_named(const fs_element *kids, unsigned n, const char *name, size_t len)
{
    for (unsigned i = 0; i < n; i++)
        if (strlen(kids[i].name) == len && !memcmp(kids[i].name, name, len))
            return &kids[i];
    return NULL;
}

static bool write_value(fhp_ctx *c, uint32_t part, const fs_element *el, fj_buf *out, const char **suffix,
                        size_t *suffix_len, fpatch_error *err);

/* The members of a complex value from its nested parts: same-named parts form a list. */
static bool write_parts(fhp_ctx *c, uint32_t parts, const fs_element *el, fj_buf *out, fpatch_error *err)
{
    const fj_doc *p = c->patch;
    unsigned nkids = 0;
    const fs_element *kids = el ? fs_children(c->schema, el, &nkids) : NULL;
    size_t written = 0;
    fj_buf_puts(out, "{");
    uint32_t part = parts + 1;
    for (uint32_t i = 0; i < p->nodes[parts].len; i++, part = fj_next(p, part)) {
        uint32_t name = p->nodes[part].type == FJ_OBJECT ? fj_get(p, part, "name") : NONE;
        if (name == NONE || p->nodes[name].type != FJ_STRING)
            return fail(err, true, "every part of a value needs a name");
        bool seen = false; /* written with the first part of that name */
        uint32_t q = parts + 1;
        for (uint32_t j = 0; j < i && !seen; j++, q = fj_next(p, q)) {
            uint32_t other = fj_get(p, q, "name");
            seen = other != NONE && p->nodes[other].len == p->nodes[name].len &&
                   !memcmp(fj_str(p, other), fj_str(p, name), p->nodes[name].len);
        }
        if (seen)
            continue;
        const char *nm = fj_str(p, name);
        size_t nlen = p->nodes[name].len;
        const fs_element *kid = kids ? child_named(kids, nkids, nm, nlen) : NULL;
        if (kids && !kid)
            return fail(err, false, "%s has no element '%.*s'", el->path, (int)nlen, nm);
        /* the values of every part with this name */
        fj_buf vals = {0};
        size_t count = 0;
        const char *suffix = "";
        size_t suffix_len = 0;
        for (uint32_t j = i, r = part; j < p->nodes[parts].len; j++, r = fj_next(p, r)) {
            uint32_t other = fj_get(p, r, "name");
            if (other == NONE || p->nodes[other].len != nlen || memcmp(fj_str(p, other), nm, nlen))
                continue;
            if (count++)
                fj_buf_puts(&vals, ",");
            if (!write_value(c, r, kid, &vals, &suffix, &suffix_len, err)) {
                fj_buf_free(&vals);
                return false;
            }
        }
        bool list = kid ? kid->max > 1 : count > 1;
        if (count > 1 && !list) {
            fj_buf_free(&vals);
            return fail(err, false, "'%.*s' is not a list but has %zu values", (int)nlen, nm, count);
        }
        if (written++)
            fj_buf_puts(out, ",");
        fj_buf_puts(out, "\"");
        fj_buf_append(out, nm, nlen);
        if (kid && (kid->flags & FS_EL_CHOICE))
            fj_buf_append(out, suffix, suffix_len);
        fj_buf_printf(out, "\":%s%s%s", list ? "[" : "", vals.data ? vals.data : "", list ? "]" : "");
        fj_buf_free(&vals);
    }
    fj_buf_puts(out, "}");
    return true;
}

/*
 * The JSON of a value part (value[x], or nested parts for a complex value);
 * el is the element it becomes (NULL when unknown). *suffix: the value[x]
 * type suffix ("" for nested parts).
 */
static bool write_value(fhp_ctx *c, uint32_t part, const fs_element *el, fj_buf *out, const char **suffix,
                        size_t *suffix_len, fpatch_error *err)
{
    const fj_doc *p = c->patch;
    uint32_t v = part_value_x(p, part, suffix, suffix_len);
    if (v != NONE) {
        fj_write(p, v, NULL, out);
        return true;
    }
    *suffix = "";
    *suffix_len = 0;
    uint32_t parts = fj_get(p, part, "part");
    if (parts == NONE || p->nodes[parts].type != FJ_ARRAY)
        return fail(err, true, "a value needs value[x] or parts");
    if (el && (el->flags & FS_EL_CHOICE))
        return fail(err, false, "%s is a choice: give its value as value[x], which names the type", el->path);
    return write_parts(c, parts, el, out, err);
}

/* Evaluate the op's path on the working document: nodes of it only. */
static bool fhp_select(fhp_ctx *c, const char *path, fp_collection *out, fpatch_error *err)
{
    fp_error fe;
    fp_expr *e = fp_compile(path, c->schema, &fe);
    if (!e)
        return fail(err, true, "the path is not FHIRPath: %s (at %d)", fe.message, fe.position);
    fp_env env;
    fp_env_init(&env, &c->w.doc);
    env.schema = c->schema;
    fp_arena_reset(c->arena);
    bool ok = fp_evaluate_node(e, &env, 0, NULL, NULL, c->arena, out, &fe);
    fp_expr_free(e);
    if (!ok)
        return fail(err, false, "the path cannot be evaluated: %s", fe.message);
    for (size_t i = 0; i < out->count; i++)
        if (out->items[i].kind != FP_NODE || out->items[i].u.node.index == FP_NO_NODE)
            return fail(err, false, "the path selects something that is not an element of the resource");
    return true;
}

/* Exactly one element; what the op needs it for, in the message. */
static bool fhp_single(fhp_ctx *c, const char *path, fp_item *out, fpatch_error *err)
{
    fp_collection found;
    if (!fhp_select(c, path, &found, err))
        return false;
    if (found.count != 1)
        return fail(err, false, "the path selects %zu elements; this operation needs exactly one", found.count);
    *out = found.items[0];
    return true;
}

/* The array all items of a list are elements of; false unless there is one. */
static bool list_of(fhp_ctx *c, const fp_collection *items, uint32_t *array, fpatch_error *err)
{
    const fj_doc *d = &c->w.doc;
    *array = parent_of(d, items->items[0].u.node.index);
    if (*array == NONE || d->nodes[*array].type != FJ_ARRAY)
        return fail(err, false, "the path does not select a list");
    for (size_t i = 1; i < items->count; i++)
        if (parent_of(d, items->items[i].u.node.index) != *array)
            return fail(err, false, "the path selects elements of more than one list");
    return true;
}

/*
 * The `_name` array that carries the ids and extensions of primitive list
 * `array` (member `name` of an object), element by element: it must stay
 * aligned when the list changes. NONE when there is none.
 */
static uint32_t companion_of(const fj_doc *d, uint32_t array)
{
    uint32_t obj = parent_of(d, array);
    if (obj == NONE || d->nodes[obj].type != FJ_OBJECT)
        return NONE;
    uint32_t k = obj + 1;
    for (uint32_t m = 0; m < d->nodes[obj].len && k + 1 != array; m++)
        k = fj_next(d, k + 1);
    char name[128];
    if (k + 1 != array || d->nodes[k].len + 1 >= sizeof name)
        return NONE;
    name[0] = '_';
    memcpy(name + 1, fj_str(d, k), d->nodes[k].len);
    uint32_t c = member(d, obj, name, d->nodes[k].len + 1);
    return c != NONE && d->nodes[c].type == FJ_ARRAY && d->nodes[c].len == d->nodes[array].len ? c : NONE;
}

/* The position of element node in array. */
static uint32_t position_in(const fj_doc *d, uint32_t array, uint32_t node)
{
    uint32_t c = array + 1, i = 0;
    while (c != node) {
        c = fj_next(d, c);
        i++;
    }
    return i;
}

/* add: `name` with the value, appended when the element is a list, else set when absent. */
static bool fhp_add_to(fhp_ctx *c, const fp_item *target, const char *name, size_t name_len, uint32_t value_part,
                       bool must_be_list, fpatch_error *err)
{
    const fj_doc *d = &c->w.doc;
    uint32_t node = target->u.node.index;
    if (d->nodes[node].type != FJ_OBJECT)
        return fail(err, false, "the path selects a primitive value, which has no elements to add to");
    unsigned nkids;
    const fs_element *kids = item_children(c->schema, target, &nkids);
    const fs_element *kid = kids ? child_named(kids, nkids, name, name_len) : NULL;
    if (!kid)
        return fail(err, false, "the selected element has no element '%.*s'", (int)name_len, name);
    bool list = kid->max > 1;
    if (must_be_list && !list)
        return fail(err, false, "'%.*s' is not a list", (int)name_len, name);
    fj_buf value = {0}, key = {0};
    const char *suffix;
    size_t suffix_len;
    bool ok = write_value(c, value_part, kid, &value, &suffix, &suffix_len, err);
    fj_buf_append(&key, name, name_len);
    if (kid->flags & FS_EL_CHOICE)
        fj_buf_append(&key, suffix, suffix_len);
    uint32_t existing = key.data ? member(d, node, key.data, key.len) : NONE;
    edits es = {.n = 1};
    edit *e = &es.e[0];
    e->value = value.data;
    e->value_len = value.len;
    if (ok && existing != NONE && d->nodes[existing].type == FJ_ARRAY) {
        e->kind = ED_INSERT, e->node = existing, e->index = d->nodes[existing].len;
    } else if (ok && existing != NONE) {
        ok = fail(err, false, "'%.*s' is already there and is not a list: use replace", (int)name_len, name);
    } else if (ok) {
        if (list) { /* a new list of one */
            fj_buf wrapped = {0};
            fj_buf_printf(&wrapped, "[%s]", value.data ? value.data : "");
            fj_buf_free(&value);
            value = wrapped;
            e->value = value.data;
            e->value_len = value.len;
        }
        e->kind = ED_ADD_MEMBER, e->node = node, e->key = key.data, e->key_len = key.len;
    }
    if (ok && (value.failed || key.failed))
        ok = fail(err, false, "out of memory");
    ok = ok && work_apply(&c->w, &es, err);
    fj_buf_free(&value);
    fj_buf_free(&key);
    return ok;
}

static bool fhp_add(fhp_ctx *c, const fhp_op *op, fpatch_error *err)
{
    fp_item target = {0};
    const fj_doc *p = c->patch;
    return fhp_single(c, op->path, &target, err) &&
           fhp_add_to(c, &target, fj_str(p, op->name), p->nodes[op->name].len, op->value, false, err);
}

/* insert into an empty (absent) list: the path's last step names the list, the rest its container. */
static bool fhp_insert_new(fhp_ctx *c, const fhp_op *op, fpatch_error *err)
{
    if (op->index != 0)
        return fail(err, false, "index %u is out of range (the list is empty)", op->index);
    char *dot = strrchr(op->path, '.');
    const char *name = dot ? dot + 1 : "";
    size_t len = strlen(name);
    for (size_t i = 0; i < len; i++)
        if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
              (name[i] >= '0' && name[i] <= '9') || name[i] == '_'))
            len = 0;
    if (!len)
        return fail(err, false, "the path selects nothing, and its last step does not name a list to create");
    char *head = strndup(op->path, (size_t)(dot - op->path));
    if (!head)
        return fail(err, false, "out of memory");
    fp_item target = {0};
    bool ok = fhp_single(c, head, &target, err) && fhp_add_to(c, &target, name, len, op->value, true, err);
    free(head);
    return ok;
}

static bool fhp_insert(fhp_ctx *c, const fhp_op *op, fpatch_error *err)
{
    fp_collection items;
    uint32_t array;
    if (!fhp_select(c, op->path, &items, err))
        return false;
    if (items.count == 0)
        return fhp_insert_new(c, op, err);
    if (!list_of(c, &items, &array, err))
        return false;
    uint32_t len = c->w.doc.nodes[array].len;
    if (op->index > len)
        return fail(err, false, "index %u is out of range (the list has %u elements)", op->index, len);
    fj_buf value = {0};
    const char *suffix;
    size_t suffix_len;
    bool ok = write_value(c, op->value, items.items[0].u.node.element, &value, &suffix, &suffix_len, err);
    edits es =
        {.n = 1,
         .e = {{.kind = ED_INSERT, .node = array, .index = op->index, .value = value.data, .value_len = value.len}}};
    uint32_t comp = companion_of(&c->w.doc, array);
    if (comp != NONE) /* the new primitive has no id or extensions */
        es.e[es.n++] = (edit){.kind = ED_INSERT, .node = comp, .index = op->index, .value = "null", .value_len = 4};
    ok = ok && work_apply(&c->w, &es, err);
    fj_buf_free(&value);
    return ok;
}

static bool fhp_delete(fhp_ctx *c, const fhp_op *op, fpatch_error *err)
{
    fp_collection items;
    if (!fhp_select(c, op->path, &items, err))
        return false;
    if (items.count == 0)
        return true; /* nothing to delete is no change */
    if (items.count > 1)
        return fail(err, false, "the path selects %zu elements; delete removes exactly one", items.count);
    const fp_item *it = &items.items[0];
    if (it->u.node.index == 0)
        return fail(err, false, "the resource itself cannot be deleted");
    const fj_doc *d = &c->w.doc;
    edits es = {.n = 1, .e = {{.kind = ED_REMOVE, .node = it->u.node.index}}};
    /* a primitive's `_name` companion (id, extensions) goes with it; in a list, the aligned element */
    uint32_t parent = parent_of(d, it->u.node.index);
    uint32_t comp = d->nodes[parent].type == FJ_ARRAY ? companion_of(d, parent) : NONE;
    if (comp != NONE)
        es.e[es.n++] = (edit){.kind = ED_REMOVE, .node = element_at(d, comp, position_in(d, parent, it->u.node.index))};
    else if (it->u.node.ext != FP_NO_NODE && d->nodes[parent].type == FJ_OBJECT)
        es.e[es.n++] = (edit){.kind = ED_REMOVE, .node = it->u.node.ext};
    return work_apply(&c->w, &es, err);
}

static bool fhp_replace(fhp_ctx *c, const fhp_op *op, fpatch_error *err)
{
    fp_item it = {0};
    if (!fhp_single(c, op->path, &it, err))
        return false;
    if (it.u.node.index == 0)
        return fail(err, false, "the resource itself cannot be replaced; replace its elements");
    const fs_element *el = it.u.node.element;
    fj_buf value = {0}, key = {0};
    const char *suffix;
    size_t suffix_len;
    /* a choice element takes the new value's type: valueString may become valueQuantity */
    const fs_element *value_el = el && !(el->flags & FS_EL_CHOICE) ? el : NULL;
    bool ok = write_value(c, op->value, value_el, &value, &suffix, &suffix_len, err);
    edits es = {.n = 1,
                .e = {{.kind = ED_REPLACE, .node = it.u.node.index, .value = value.data, .value_len = value.len}}};
    if (ok && el && (el->flags & FS_EL_CHOICE)) {
        if (!suffix_len)
            ok = fail(err, false, "%s is a choice: give its value as value[x], which names the type", el->path);
        fj_buf_puts(&key, el->name);
        fj_buf_append(&key, suffix, suffix_len);
        es.e[0].key = key.data;
        es.e[0].key_len = key.len;
    }
    ok = ok && work_apply(&c->w, &es, err);
    fj_buf_free(&value);
    fj_buf_free(&key);
    return ok;
}

/* move within one list: remove at source and insert so that it ends up at destination, in one pass. */
static bool fhp_move(fhp_ctx *c, const fhp_op *op, fpatch_error *err)
{
    fp_collection items;
    uint32_t array;
    if (!fhp_select(c, op->path, &items, err))
        return false;
    if (items.count == 0)
        return fail(err, false, "the path selects no list");
    if (!list_of(c, &items, &array, err))
        return false;
    uint32_t len = c->w.doc.nodes[array].len;
    if (op->source >= len || op->destination >= len)
        return fail(err, false, "source %u or destination %u is out of range (the list has %u elements)", op->source,
                    op->destination, len);
    if (op->source == op->destination)
        return true;
    size_t vlen;
    uint32_t moved = element_at(&c->w.doc, array, op->source);
    char *value = node_text(&c->w.doc, moved, &vlen);
    if (!value)
        return fail(err, false, "out of memory");
    /* positions of the list before the removal */
    uint32_t at = op->destination < op->source ? op->destination : op->destination + 1;
    edits es = {.n = 2,
                .e = {{.kind = ED_REMOVE, .node = moved},
                      {.kind = ED_INSERT, .node = array, .index = at, .value = value, .value_len = vlen}}};
    /* the ids and extensions of a primitive list move along */
    uint32_t comp = companion_of(&c->w.doc, array);
    size_t clen = 0;
    char *ctext = NULL;
    if (comp != NONE) {
        uint32_t cmoved = element_at(&c->w.doc, comp, op->source);
        ctext = node_text(&c->w.doc, cmoved, &clen);
        es.e[es.n++] = (edit){.kind = ED_REMOVE, .node = cmoved};
        es.e[es.n++] = (edit){.kind = ED_INSERT, .node = comp, .index = at, .value = ctext, .value_len = clen};
    }
    bool ok = (comp == NONE || ctext) ? work_apply(&c->w, &es, err) : fail(err, false, "out of memory");
    free(value);
    free(ctext);
    return ok;
}

static bool fhp_apply(fhp_ctx *c, const fhp_op *op, fpatch_error *err)
{
    switch (op->type[0]) {
    case 'a': return fhp_add(c, op, err);
    case 'i': return fhp_insert(c, op, err);
    case 'd': return fhp_delete(c, op, err);
    case 'r': return fhp_replace(c, op, err);
    default: return fhp_move(c, op, err);
    }
}

char *fpatch_fhirpath(const fj_doc *resource, const fj_doc *patch, const fs_schema *schema, fp_arena *arena,
                      size_t *len, fpatch_error *err)
{
    error_reset(err);
    uint32_t rt = patch->nodes[0].type == FJ_OBJECT ? fj_get(patch, 0, "resourceType") : NONE;
    if (rt == NONE || !fj_str_eq(patch, rt, "Parameters")) {
        fail(err, true, "a FHIRPath Patch is a Parameters resource");
        return NULL;
    }
    uint32_t params = fj_get(patch, 0, "parameter");
    if (params == NONE || patch->nodes[params].type != FJ_ARRAY) {
        fail(err, true, "a FHIRPath Patch needs at least one operation parameter");
        return NULL;
    }
    if (patch->nodes[params].len > FPATCH_MAX_OPERATIONS) {
        fail(err, true, "a patch has at most %u operations", FPATCH_MAX_OPERATIONS);
        return NULL;
    }
    fhp_ctx c = {schema ? schema : fs_r4(), arena, patch, {0}};
    if (!work_init(&c.w, resource, err)) {
        work_free(&c.w);
        return NULL;
    }
    uint32_t param = params + 1;
    for (uint32_t i = 0; i < patch->nodes[params].len; i++, param = fj_next(patch, param)) {
        err->op = (int)i;
        err->op_name[0] = err->path[0] = '\0';
        fhp_op op;
        bool ok = fhp_read(patch, param, &op, err) && fhp_apply(&c, &op, err);
        free(op.path);
        if (!ok) {
            fp_arena_reset(arena);
            work_free(&c.w);
            return NULL;
        }
    }
    fp_arena_reset(arena);
    error_reset(err);
    return work_finish(&c.w, len, err);
}
