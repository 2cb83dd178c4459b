/*
 * ig/tools/docgen.c — Markdown pages of the implementation guide (see docgen.h).
 * Pages are composed in memory streams (open_memstream) and written with igp_write_text;
 * every row list is sorted before it is printed, so the output depends only on the package.
 */
#include "ig/tools/docgen.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers ----------------------------------------------------------------------- */

static bool is_logical(const igp_resource *r)
{
    return !r->example && r->kind && !strcmp(r->kind, "logical");
}

static bool is_sd(const igp_resource *r)
{
    return !r->example && !strcmp(r->resource_type, "StructureDefinition");
}

static bool is_extension(const igp_resource *r)
{
    return is_sd(r) && !is_logical(r) && r->type && !strcmp(r->type, "Extension");
}

static bool is_profile(const igp_resource *r)
{
    return is_sd(r) && !is_logical(r) && !is_extension(r);
}

/* Text for a table cell: pipes escaped, line breaks as <br>. */
static void cell(FILE *f, const char *text)
{
    for (const char *c = text ? text : ""; *c; c++) {
        if (*c == '|')
            fputs("\\|", f);
        else if (*c == '\n')
            fputs("<br>", f);
        else if (*c != '\r')
            fputc(*c, f);
    }
}

/* A canonical as a link to its page when the package has one, else as code. */
static void link_to(FILE *f, const igp_package *p, const char *url)
{
    const igp_resource *r = url ? igp_find(p, url) : NULL;
    if (r && is_sd(r))
        fprintf(f, "[%s](%s.md)", r->id, r->id);
    else if (r)
        fprintf(f, "`%s`", r->id);
    else
        fprintf(f, "`%s`", url ? url : "");
}

static const char *title_of(const igp_resource *r)
{
    const char *t = igp_str(r->json, "title");
    return t ? t : igp_str(r->json, "name") ? igp_str(r->json, "name") : r->id;
}

/* The map (and comment) of an element's mapping with that identity, joined by <br>. */
static void mappings(FILE *f, json_object *el, const char *identity, bool with_comment)
{
    json_object *maps = igp_get(el, "mapping");
    bool first = true;
    for (size_t i = 0; i < igp_len(maps); i++) {
        json_object *m = json_object_array_get_idx(maps, i);
        const char *id = igp_str(m, "identity");
        if (!id || strcmp(id, identity))
            continue;
        fputs(first ? "" : "<br>", f);
        first = false;
        fputc('`', f);
        cell(f, igp_str(m, "map"));
        fputc('`', f);
        if (with_comment && igp_str(m, "comment")) {
            fputs(": ", f);
            cell(f, igp_str(m, "comment"));
        }
    }
}

static bool close_page(FILE *f, char **text, const char *out, const char *name, oo_list *issues)
{
    fclose(f);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", out, name);
    bool ok = igp_write_text(path, *text, issues);
    free(*text);
    return ok;
}

/* ---- a profile's page -------------------------------------------------------------------- */

static void types_cell(FILE *f, const igp_package *p, json_object *el)
{
    json_object *types = igp_get(el, "type");
    for (size_t i = 0; i < igp_len(types); i++) {
        json_object *t = json_object_array_get_idx(types, i);
        fprintf(f, "%s%s", i ? ", " : "", igp_str(t, "code") ? igp_str(t, "code") : "");
        const char *lists[] = {"profile", "targetProfile"};
        for (size_t l = 0; l < 2; l++) {
            json_object *urls = igp_get(t, lists[l]);
            for (size_t k = 0; k < igp_len(urls); k++) {
                fputs(k ? ", " : " (", f);
                link_to(f, p, json_object_get_string(json_object_array_get_idx(urls, k)));
                fputs(k + 1 == igp_len(urls) ? ")" : "", f);
            }
        }
    }
    json_object_object_foreach(el, key, value)
    {
        if (!strncmp(key, "fixed", 5) || !strncmp(key, "pattern", 7)) {
            fprintf(f, "%s%s `", igp_len(types) ? "<br>" : "", key);
            cell(f, json_object_to_json_string_ext(value, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
            fputc('`', f);
        }
    }
}

static void binding_cell(FILE *f, const igp_package *p, json_object *el)
{
    json_object *b = igp_get(el, "binding");
    if (!b)
        return;
    fprintf(f, "%s ", igp_str(b, "strength") ? igp_str(b, "strength") : "");
    link_to(f, p, igp_str(b, "valueSet"));
}

static void rules_cell(FILE *f, json_object *el)
{
    json_object *cs = igp_get(el, "constraint");
    for (size_t i = 0; i < igp_len(cs); i++) {
        json_object *c = json_object_array_get_idx(cs, i);
        fprintf(f, "%s`%s` (%s): ", i ? "<br>" : "", igp_str(c, "key") ? igp_str(c, "key") : "",
                igp_str(c, "severity") ? igp_str(c, "severity") : "");
        cell(f, igp_str(c, "human"));
    }
}

static void cardinality(FILE *f, json_object *el)
{
    json_object *min = igp_get(el, "min");
    const char *max = igp_str(el, "max");
    if (min || max)
        fprintf(f, "%s..%s", min ? json_object_get_string(min) : "", max ? max : "");
}

static void element_row(FILE *f, const igp_package *p, json_object *el)
{
    const char *id = igp_str(el, "id") ? igp_str(el, "id") : igp_str(el, "path");
    fputs("| `", f);
    cell(f, id);
    fputs("` | ", f);
    cardinality(f, el);
    fputs(" | ", f);
    types_cell(f, p, el);
    fputs(" | ", f);
    binding_cell(f, p, el);
    fputs(" | ", f);
    if (igp_str(el, "short")) {
        fputs("**", f);
        cell(f, igp_str(el, "short"));
        fputs("**", f);
    }
    if (igp_str(el, "definition")) {
        fputs(igp_str(el, "short") ? "<br>" : "", f);
        cell(f, igp_str(el, "definition"));
    }
    fputs(" | ", f);
    rules_cell(f, el);
    fputs(" | ", f);
    mappings(f, el, "seeds", true);
    fputs(" | ", f);
    mappings(f, el, "insurer", false);
    fputs(" |\n", f);
}

/* The first packaged example (by file name) that names the profile in meta.profile. */
static const igp_resource *example_of(const igp_package *p, const char *url)
{
    for (size_t i = 0; i < p->count; i++) {
        json_object *profiles = igp_get(igp_get(p->items[i].json, "meta"), "profile");
        for (size_t k = 0; p->items[i].example && k < igp_len(profiles); k++)
            if (!strcmp(json_object_get_string(json_object_array_get_idx(profiles, k)), url))
                return &p->items[i];
    }
    return NULL;
}

static bool profile_page(const igp_package *p, const igp_resource *r, const char *out, oo_list *issues)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    fprintf(f, "# %s (`%s`)\n\n<!-- generated by `fhirgw ig docs` from ig/: do not edit -->\n\n", title_of(r), r->id);
    if (igp_str(r->json, "description"))
        fprintf(f, "%s\n\n", igp_str(r->json, "description"));
    fprintf(f, "| | |\n| --- | --- |\n| url | `%s` |\n| version | %s |\n| type | %s |\n| base | ", r->url,
            r->version ? r->version : "", r->type ? r->type : "");
    link_to(f, p, igp_str(r->json, "baseDefinition"));
    fputs(
        " |\n\n## Elements (differential)\n\n"
        "| element | card. | type / profile | binding | short / definition | rules | source (seeds) | insurer field |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- |\n",
        f);
    json_object *elements = igp_get(igp_get(r->json, "differential"), "element");
    for (size_t i = 0; i < igp_len(elements); i++)
        element_row(f, p, json_object_array_get_idx(elements, i));
    const igp_resource *ex = r->url ? example_of(p, r->url) : NULL;
    if (ex) {
        char *json = igp_serialise(ex->json);
        fprintf(f, "\n## Example (`example/%s`)\n\n```json\n%s```\n", ex->filename, json);
        free(json);
    }
    char name[512];
    snprintf(name, sizeof name, "%s.md", r->id);
    return close_page(f, &text, out, name, issues);
}

/* ---- a logical model's page -------------------------------------------------------------- */

static bool model_page(const igp_package *p, const igp_resource *r, const char *out, oo_list *issues)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    fprintf(f, "# %s (`%s`)\n\n<!-- generated by `fhirgw ig docs` from ig/: do not edit -->\n\n", title_of(r), r->id);
    if (igp_str(r->json, "description"))
        fprintf(f, "%s\n\n", igp_str(r->json, "description"));
    fprintf(f,
            "A logical model (`%s`, version %s). JSON Schema: [`%s.schema.json`](../../ig/schemas/%s.schema.json).\n\n",
            r->url, r->version ? r->version : "", r->id, r->id);
    fputs("| field | card. | type | binding | short | definition |\n| --- | --- | --- | --- | --- | --- |\n", f);
    json_object *elements = igp_get(igp_get(r->json, "snapshot"), "element");
    for (size_t i = 0; i < igp_len(elements); i++) {
        json_object *el = json_object_array_get_idx(elements, i);
        fputs("| `", f);
        cell(f, igp_str(el, "path"));
        fputs("` | ", f);
        cardinality(f, el);
        fputs(" | ", f);
        types_cell(f, p, el);
        fputs(" | ", f);
        binding_cell(f, p, el);
        fputs(" | ", f);
        cell(f, igp_str(el, "short"));
        fputs(" | ", f);
        cell(f, igp_str(el, "definition"));
        fputs(" |\n", f);
    }
    char name[512];
    snprintf(name, sizeof name, "%s.md", r->id);
    return close_page(f, &text, out, name, issues);
}

/* ---- the overview: from the source texts to the elements --------------------------------- */

typedef struct trace_row {
    char *paragraph, *item, *text, *element, *insurer;
} trace_row;

typedef struct trace {
    trace_row *rows;
    size_t count, capacity;
} trace;

static char *dup_or_empty(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d)
        abort();
    return d;
}

static void trace_add(trace *t, trace_row row)
{
    if (t->count == t->capacity) {
        t->capacity = t->capacity ? t->capacity * 2 : 64;
        t->rows = realloc(t->rows, t->capacity * sizeof *t->rows);
        if (!t->rows)
            abort();
    }
    t->rows[t->count++] = row;
}

static void trace_free(trace *t)
{
    for (size_t i = 0; i < t->count; i++) {
        trace_row *r = &t->rows[i];
        free(r->paragraph), free(r->item), free(r->text), free(r->element), free(r->insurer);
    }
    free(t->rows);
}

/* strcmp with digit runs compared as numbers: "ZN §2" before "ZN §10". */
static int natural_cmp(const char *a, const char *b)
{
    while (*a && *b) {
        if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
            char *ea, *eb;
            unsigned long x = strtoul(a, &ea, 10), y = strtoul(b, &eb, 10);
            if (x != y)
                return x < y ? -1 : 1;
            a = ea, b = eb;
        } else if (*a != *b) {
            return (unsigned char)*a - (unsigned char)*b;
        } else {
            a++, b++;
        }
    }
    return (unsigned char)*a - (unsigned char)*b;
}

static int by_trace(const void *x, const void *y)
{
    const trace_row *a = x, *b = y;
    int c = natural_cmp(a->paragraph, b->paragraph);
    c = c ? c : natural_cmp(a->item, b->item);
    return c ? c : strcmp(a->element, b->element);
}

/* "ZN §7 «Dit wordt ...»" -> paragraph "ZN §7", text "«Dit wordt ...»". */
static void split_comment(const char *comment, char **paragraph, char **text)
{
    const char *quote = strstr(comment, "\xc2\xab"); /* « */
    size_t n = quote ? (size_t)(quote - comment) : strlen(comment);
    while (n && isspace((unsigned char)comment[n - 1]))
        n--;
    *paragraph = strndup(comment, n);
    *text = dup_or_empty(quote ? quote : "");
}

static char *element_ref(const igp_resource *r, json_object *el)
{
    const char *id = igp_str(el, "id") ? igp_str(el, "id") : igp_str(el, "path");
    char buf[1024];
    snprintf(buf, sizeof buf, "[%s](%s.md) `%s`", r->id, r->id, id ? id : "");
    return dup_or_empty(buf);
}

static const char *mapping_of(json_object *el, const char *identity)
{
    json_object *maps = igp_get(el, "mapping");
    for (size_t i = 0; i < igp_len(maps); i++) {
        const char *id = igp_str(json_object_array_get_idx(maps, i), "identity");
        if (id && !strcmp(id, identity))
            return igp_str(json_object_array_get_idx(maps, i), "map");
    }
    return NULL;
}

/* Every seeds mapping of every profile and extension element: one row each. */
static void trace_seeds(const igp_package *p, trace *t)
{
    for (size_t i = 0; i < p->count; i++) {
        const igp_resource *r = &p->items[i];
        json_object *elements = is_sd(r) && !is_logical(r) ? igp_get(igp_get(r->json, "differential"), "element")
                                                           : NULL;
        for (size_t e = 0; e < igp_len(elements); e++) {
            json_object *el = json_object_array_get_idx(elements, e);
            json_object *maps = igp_get(el, "mapping");
            for (size_t m = 0; m < igp_len(maps); m++) {
                json_object *map = json_object_array_get_idx(maps, m);
                if (!igp_str(map, "identity") || strcmp(igp_str(map, "identity"), "seeds"))
                    continue;
                trace_row row = {0};
                split_comment(igp_str(map, "comment") ? igp_str(map, "comment") : "", &row.paragraph, &row.text);
                row.item = dup_or_empty(igp_str(map, "map"));
                row.element = element_ref(r, el);
                row.insurer = dup_or_empty(mapping_of(el, "insurer"));
                trace_add(t, row);
            }
        }
    }
}

/* The elements (profiles, extensions) and model fields bound to a value set: "a, b" or "". */
static char *bound_to(const igp_package *p, const char *vs_url, bool models)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    bool first = true;
    for (size_t i = 0; i < p->count; i++) {
        const igp_resource *r = &p->items[i];
        if (!is_sd(r) || is_logical(r) != models)
            continue;
        json_object *elements = igp_get(igp_get(r->json, models ? "snapshot" : "differential"), "element");
        for (size_t e = 0; e < igp_len(elements); e++) {
            json_object *el = json_object_array_get_idx(elements, e);
            const char *vs = igp_str(igp_get(el, "binding"), "valueSet");
            if (!vs || strncmp(vs, vs_url, strlen(vs_url)) || (vs[strlen(vs_url)] && vs[strlen(vs_url)] != '|'))
                continue;
            char *ref = models ? NULL : element_ref(r, el);
            fprintf(f, "%s", first ? "" : "<br>");
            if (models)
                fprintf(f, "`%s`", igp_str(el, "path"));
            else
                fprintf(f, "%s", ref);
            free(ref);
            first = false;
        }
    }
    fclose(f);
    return text;
}

static const char *concept_property(json_object *concept, const char *code)
{
    json_object *props = igp_get(concept, "property");
    for (size_t i = 0; i < igp_len(props); i++) {
        json_object *prop = json_object_array_get_idx(props, i);
        if (igp_str(prop, "code") && !strcmp(igp_str(prop, "code"), code))
            return igp_str(prop, "valueString") ? igp_str(prop, "valueString") : igp_str(prop, "valueCode");
    }
    return NULL;
}

/* One row per requirement concept (nested ones too): paragraph (source), code and rule, the
 * Dutch sentence, the elements bound to the requirement value set, the fields that receive it. */
static void trace_concepts(json_object *concepts, const char *elements, const char *fields, trace *t)
{
    for (size_t i = 0; i < igp_len(concepts); i++) {
        json_object *c = json_object_array_get_idx(concepts, i);
        const char *rule = concept_property(c, "rule"), *code = igp_str(c, "code") ? igp_str(c, "code") : "";
        char item[512], carried[2048];
        snprintf(item, sizeof item, "%s%s%s", code, rule ? " / " : "", rule ? rule : "");
        snprintf(carried, sizeof carried, "code `%s` of `requirement`%s%s", code, *elements ? " in " : "", elements);
        trace_row row = {dup_or_empty(concept_property(c, "source")), dup_or_empty(item),
                         dup_or_empty(igp_str(c, "definition")), dup_or_empty(carried), dup_or_empty(fields)};
        trace_add(t, row);
        trace_concepts(igp_get(c, "concept"), elements, fields, t);
    }
}

static void trace_requirements(const igp_package *p, trace *t)
{
    char url[1024];
    snprintf(url, sizeof url, "%s/CodeSystem/requirement", p->canonical);
    const igp_resource *cs = igp_find(p, url);
    if (!cs)
        return;
    snprintf(url, sizeof url, "%s/ValueSet/requirement", p->canonical);
    char *elements = bound_to(p, url, false), *fields = bound_to(p, url, true);
    trace_concepts(igp_get(cs->json, "concept"), elements, fields, t);
    free(elements);
    free(fields);
}

static void print_trace(FILE *f, trace *t)
{
    if (t->count)
        qsort(t->rows, t->count, sizeof *t->rows, by_trace);
    fputs("## From the source texts to the elements\n\n"
          "Per paragraph of the source texts (ZN, CZ): each item or rule, the Dutch sentence it comes from, the FHIR "
          "element that carries it and the insurer's field it feeds. The other way round, each profile's page "
          "names the source of every element.\n",
          f);
    if (!t->count)
        fputs("\n(No profile maps an element to the source texts yet.)\n", f);
    for (size_t i = 0; i < t->count; i++) {
        const trace_row *r = &t->rows[i];
        if (!i || strcmp(r->paragraph, t->rows[i - 1].paragraph))
            fprintf(f,
                    "\n### %s\n\n| item / rule | source text | FHIR element | insurer field |\n"
                    "| --- | --- | --- | --- |\n",
                    *r->paragraph ? r->paragraph : "(no paragraph given)");
        fputs("| `", f);
        cell(f, r->item);
        fputs("` | ", f);
        cell(f, r->text);
        fprintf(f, " | %s | ", r->element);
        if (*r->insurer && r->insurer[0] != '`')
            fprintf(f, "`%s`", r->insurer);
        else
            fputs(r->insurer, f);
        fputs(" |\n", f);
    }
}

static void resource_list(FILE *f, const igp_package *p, const char *heading, bool (*wanted)(const igp_resource *),
                          bool pages)
{
    size_t listed = 0;
    for (size_t i = 0; i < p->count; i++) {
        const igp_resource *r = &p->items[i];
        if (!wanted(r))
            continue;
        if (!listed++)
            fprintf(f, "\n## %s\n\n| id | title | description |\n| --- | --- | --- |\n", heading);
        if (pages)
            fprintf(f, "| [%s](%s.md) | ", r->id, r->id);
        else
            fprintf(f, "| `%s` | ", r->id);
        cell(f, title_of(r));
        fputs(" | ", f);
        cell(f, igp_str(r->json, "description"));
        fputs(" |\n", f);
    }
    if (!listed)
        fprintf(f, "\n## %s\n\n(none yet)\n", heading);
}

static bool is_code_system(const igp_resource *r)
{
    return !r->example && !strcmp(r->resource_type, "CodeSystem");
}

static bool is_value_set(const igp_resource *r)
{
    return !r->example && !strcmp(r->resource_type, "ValueSet");
}

static bool overview(const igp_package *p, const char *out, oo_list *issues)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    const char *title = igp_str(p->manifest, "title"), *description = igp_str(p->manifest, "description");
    fprintf(f, "# %s\n\n<!-- generated by `fhirgw ig docs` from ig/: do not edit -->\n\n", title ? title : p->name);
    fprintf(f, "Package `%s` version %s, canonical `%s`. %s\n\n", p->name, p->version, p->canonical,
            description ? description : "");
    fputs("How the guide is written: [ig/README.md](../../ig/README.md); how it is built and loaded: the "
          "implementation guide section of the [README](../../README.md).\n\n",
          f);
    trace t = {0};
    trace_seeds(p, &t);
    trace_requirements(p, &t);
    print_trace(f, &t);
    trace_free(&t);
    resource_list(f, p, "Profiles", is_profile, true);
    resource_list(f, p, "Extensions", is_extension, true);
    resource_list(f, p, "Code systems", is_code_system, false);
    resource_list(f, p, "Value sets", is_value_set, false);
    resource_list(f, p, "Logical models (the insurer's contracting model)", is_logical, true);
    return close_page(f, &text, out, "README.md", issues);
}

bool igd_write_all(const igp_package *p, const char *out, oo_list *issues)
{
    bool ok = igp_mkdirs(out);
    if (!ok)
        oo_add(issues, OO_ERROR, OO_EXCEPTION, NULL, 0, 0, "%s: cannot make the folder", out);
    for (size_t i = 0; ok && i < p->count; i++) {
        if (is_logical(&p->items[i]))
            ok = model_page(p, &p->items[i], out, issues);
        else if (is_sd(&p->items[i]))
            ok = profile_page(p, &p->items[i], out, issues);
    }
    return ok && overview(p, out, issues);
}
