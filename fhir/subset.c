/*
 * fhir/subset.c — a resource cut down for _summary and _elements (see subset.h).
 *
 * The resource is parsed (a copy: the parser decodes in place) and written
 * again member by member: the root's members are kept or left out by the
 * spec, and with _summary=true the members of backbone elements too; what
 * is kept is written whole by fj_write.
 */
#include "fhir/subset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/json.h"

#define SUBSETTED                                                                                       \
    "{\"system\":\"http://terminology.hl7.org/CodeSystem/v3-ObservationValue\",\"code\":\"SUBSETTED\"," \
    "\"display\":\"subsetted\"}"

static bool element_name(const char *s)
{
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
        return false;
    for (s++; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')))
            return false;
    return true;
}

/* _elements: names split in place in out->text; "Patient.name" is read as "name". */
static bool parse_elements(const char *value, fsub_spec *out, char *err, size_t errlen)
{
    if (strlen(value) >= sizeof out->text) {
        snprintf(err, errlen, "_elements is longer than %d characters", FSUB_TEXT_MAX - 1);
        return false;
    }
    strcpy(out->text, value);
    for (char *save = NULL, *name = strtok_r(out->text, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        while (*name == ' ')
            name++;
        for (char *end = name + strlen(name); end > name && end[-1] == ' ';)
            *--end = '\0';
        char *dot = strchr(name, '.');
        if (dot && !strchr(dot + 1, '.'))
            name = dot + 1;
        if (!element_name(name)) {
            snprintf(err, errlen, "_elements: '%.64s' is not the name of an element", name);
            return false;
        }
        if (out->count == FSUB_NAMES_MAX) {
            snprintf(err, errlen, "_elements names more than %d elements", FSUB_NAMES_MAX);
            return false;
        }
        out->names[out->count++] = name;
    }
    if (!out->count) {
        snprintf(err, errlen, "_elements names no element");
        return false;
    }
    out->mode = FSUB_ELEMENTS;
    return true;
}

bool fsub_parse(const char *summary, const char *elements, fsub_spec *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (summary && elements) {
        snprintf(err, errlen, "_summary and _elements cannot be combined");
        return false;
    }
    if (elements)
        return parse_elements(elements, out, err, errlen);
    if (!summary || !strcmp(summary, "false") || !strcmp(summary, "count"))
        return true;
    static const struct {
        const char *value;
        fsub_mode mode;
    } modes[] = {{"true", FSUB_SUMMARY}, {"text", FSUB_TEXT}, {"data", FSUB_DATA}};
    for (size_t i = 0; i < sizeof modes / sizeof *modes; i++)
        if (!strcmp(summary, modes[i].value)) {
            out->mode = modes[i].mode;
            return true;
        }
    snprintf(err, errlen, "_summary must be true, text, data, count or false, not '%.32s'", summary);
    return false;
}

/* ---- writing ---- */

/* Take back what was written after mark (the buffer stays NUL-terminated). */
static void rewind_to(fj_buf *out, size_t mark)
{
    if (out->failed || mark >= out->len)
        return;
    out->len = mark;
    out->data[mark] = '\0';
}

typedef struct writer {
    const fs_schema *s;
    const fsub_spec *spec;
    const fj_doc *d;
    fj_buf *out;
} writer;

/* The element a key names in scope (a companion `_name` names name's), or NULL. */
static const fs_element *element_of(const writer *w, const fs_element *scope, uint32_t key)
{
    const char *k = fj_str(w->d, key);
    size_t len = w->d->nodes[key].len;
    if (len > 1 && k[0] == '_')
        k++, len--;
    const fs_type *choice;
    return fs_child(w->s, scope, k, len, &choice);
}

static bool listed(const fsub_spec *spec, const fs_element *el)
{
    for (size_t i = 0; i < spec->count; i++)
        if (!strcmp(spec->names[i], el->name))
            return true;
    return false;
}

/* Is a member of this element kept? (root: a member of the resource itself) */
static bool kept(const writer *w, const fs_element *el, bool root)
{
    if (!el)
        return w->spec->mode == FSUB_DATA; /* a key the schema does not know: not part of any subset */
    bool text = root && !strcmp(el->name, "text");
    switch (w->spec->mode) {
    case FSUB_ALL: return true;
    case FSUB_DATA: return !text;
    case FSUB_TEXT: return root && (text || el->min > 0);
    case FSUB_SUMMARY: return (el->flags & FS_EL_SUMMARY) || el->min > 0;
    case FSUB_ELEMENTS: return !root || el->min > 0 || listed(w->spec, el);
    }
    return false;
}

static void write_key(writer *w, uint32_t key, bool *first)
{
    fj_buf_puts(w->out, *first ? "" : ",");
    *first = false;
    fj_buf_string(w->out, fj_str(w->d, key), w->d->nodes[key].len);
    fj_buf_puts(w->out, ":");
}

static bool write_members(writer *w, uint32_t obj, const fs_element *scope, bool root);

/* A backbone element's value, cut inside (_summary=true); false when nothing of it is left. */
static bool write_backbone(writer *w, uint32_t v, const fs_element *el)
{
    const fj_doc *d = w->d;
    size_t mark = w->out->len;
    if (d->nodes[v].type == FJ_OBJECT) {
        fj_buf_puts(w->out, "{");
        if (!write_members(w, v, el, false)) {
            rewind_to(w->out, mark);
            return false;
        }
        fj_buf_puts(w->out, "}");
        return true;
    }
    if (d->nodes[v].type != FJ_ARRAY) {
        fj_write(d, v, NULL, w->out);
        return true;
    }
    fj_buf_puts(w->out, "[");
    bool any = false;
    for (uint32_t i = v + 1; i < fj_next(d, v); i = fj_next(d, i)) {
        size_t before = w->out->len;
        fj_buf_puts(w->out, any ? "," : "");
        if (write_backbone(w, i, el))
            any = true;
        else
            rewind_to(w->out, before);
    }
    if (!any) {
        rewind_to(w->out, mark);
        return false;
    }
    fj_buf_puts(w->out, "]");
    return true;
}

/* meta as it was (meta: its value, UINT32_MAX when there is none), with SUBSETTED added to its tags. */
static void write_meta(writer *w, uint32_t meta, bool *first)
{
    const fj_doc *d = w->d;
    fj_buf_puts(w->out, *first ? "\"meta\":{" : ",\"meta\":{");
    *first = false;
    uint32_t tags = UINT32_MAX, end = meta != UINT32_MAX && d->nodes[meta].type == FJ_OBJECT ? fj_next(d, meta) : 0;
    bool none = true;
    for (uint32_t k = meta + 1; k < end; k = fj_next(d, k + 1)) {
        if (fj_str_eq(d, k, "tag")) {
            tags = k + 1;
            continue;
        }
        write_key(w, k, &none);
        fj_write(d, k + 1, NULL, w->out);
    }
    fj_buf_puts(w->out, none ? "\"tag\":[" : ",\"tag\":[");
    end = tags != UINT32_MAX && d->nodes[tags].type == FJ_ARRAY ? fj_next(d, tags) : 0;
    for (uint32_t t = tags + 1; t < end; t = fj_next(d, t)) {
        fj_write(d, t, NULL, w->out);
        fj_buf_puts(w->out, ",");
    }
    fj_buf_puts(w->out, SUBSETTED "]}");
}

/* The kept members of obj (no braces); false when none was written. */
static bool write_members(writer *w, uint32_t obj, const fs_element *scope, bool root)
{
    const fj_doc *d = w->d;
    bool first = true;
    for (uint32_t k = obj + 1; k < fj_next(d, obj); k = fj_next(d, k + 1)) {
        if (root && (fj_str_eq(d, k, "resourceType") || fj_str_eq(d, k, "id") || fj_str_eq(d, k, "meta")))
            continue; /* written first by fsub_write */
        const fs_element *el = element_of(w, scope, k);
        if (!kept(w, el, root))
            continue;
        size_t mark = w->out->len;
        bool was_first = first;
        write_key(w, k, &first);
        bool cut_inside = w->spec->mode == FSUB_SUMMARY && el && (el->flags & FS_EL_INLINE);
        if (!cut_inside)
            fj_write(d, k + 1, NULL, w->out);
        else if (!write_backbone(w, k + 1, el)) {
            rewind_to(w->out, mark); /* nothing of it is left: no key either */
            first = was_first;
        }
    }
    return !first;
}

bool fsub_write(const fs_schema *s, const fsub_spec *spec, const char *json, size_t len, fj_buf *out)
{
    char *copy = malloc(len + 1);
    if (!copy)
        return false;
    memcpy(copy, json, len);
    copy[len] = '\0';
    fj_doc d;
    fj_error err;
    bool ok = fj_parse(copy, len, NULL, &d, &err) && d.nodes[0].type == FJ_OBJECT;
    uint32_t rt = ok ? fj_get(&d, 0, "resourceType") : UINT32_MAX;
    const fs_type *type = rt != UINT32_MAX && d.nodes[rt].type == FJ_STRING
                              ? fs_type_by_name(s, fj_str(&d, rt), d.nodes[rt].len)
                              : NULL;
    if (!type || type->kind != FS_RESOURCE) {
        fj_doc_free(&d);
        free(copy);
        return false;
    }
    writer w = {s, spec, &d, out};
    bool first = true;
    fj_buf_puts(out, "{");
    write_key(&w, rt - 1, &first);
    fj_write(&d, rt, NULL, out);
    uint32_t id = fj_get(&d, 0, "id");
    if (id != UINT32_MAX) {
        write_key(&w, id - 1, &first);
        fj_write(&d, id, NULL, out);
    }
    write_meta(&w, fj_get(&d, 0, "meta"), &first);
    size_t mark = out->len;
    fj_buf_puts(out, ",");
    if (!write_members(&w, 0, &s->elements[type->root], true))
        rewind_to(out, mark);
    fj_buf_puts(out, "}");
    fj_doc_free(&d);
    free(copy);
    return !out->failed;
}
