/*
 * ig/tools/package.c — the implementation guide's source folder into a FHIR NPM package folder
 * (see package.h). The package owns what it loads; files are read and written here only.
 */
#include "ig/tools/package.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fhir/validate.h"

/* The folders whose resources are packaged, with the resource types each may hold. */
static const struct {
    const char *folder;
    const char *types[4];
} packaged_folders[] = {
    {"profiles", {"StructureDefinition"}},
    {"extensions", {"StructureDefinition"}},
    {"terminology", {"CodeSystem", "ValueSet", "ConceptMap", "NamingSystem"}},
    {"models", {"StructureDefinition"}},
};

/* ---- json-c shorthands ------------------------------------------------------------------- */

json_object *igp_get(json_object *o, const char *key)
{
    json_object *v = NULL;
    return o && json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

const char *igp_str(json_object *o, const char *key)
{
    json_object *v = igp_get(o, key);
    return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

size_t igp_len(json_object *array)
{
    return array && json_object_is_type(array, json_type_array) ? json_object_array_length(array) : 0;
}

char *igp_serialise(json_object *o)
{
    const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                                             JSON_C_TO_STRING_NOSLASHESCAPE);
    size_t n = strlen(text);
    char *out = malloc(n + 2);
    if (!out)
        abort();
    memcpy(out, text, n);
    out[n] = '\n';
    out[n + 1] = '\0';
    return out;
}

/* ---- files ------------------------------------------------------------------------------- */

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (!s)
        abort();
    snprintf(s, n, "%s/%s", a, b);
    return s;
}

static void paths_push(igp_paths *l, char *path)
{
    if (l->count == l->capacity) {
        l->capacity = l->capacity ? l->capacity * 2 : 16;
        l->paths = realloc(l->paths, l->capacity * sizeof *l->paths);
        if (!l->paths)
            abort();
    }
    l->paths[l->count++] = path;
}

void igp_paths_free(igp_paths *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->paths[i]);
    free(l->paths);
    memset(l, 0, sizeof *l);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The entries of dir (no dot files), sorted. */
static bool dir_names(const char *dir, igp_paths *names)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            paths_push(names, strdup(e->d_name));
    closedir(d);
    if (names->count)
        qsort(names->paths, names->count, sizeof *names->paths, by_name);
    return true;
}

bool igp_list_json(const char *dir, bool optional, igp_paths *out)
{
    igp_paths names = {0};
    if (!dir_names(dir, &names))
        return optional && errno == ENOENT;
    bool ok = true;
    for (size_t i = 0; ok && i < names.count; i++) {
        char *path = join(dir, names.paths[i]);
        size_t n = strlen(names.paths[i]);
        if (is_dir(path)) {
            ok = igp_list_json(path, false, out);
            free(path);
        } else if (n > 5 && !strcmp(names.paths[i] + n - 5, ".json")) {
            paths_push(out, path);
        } else {
            free(path);
        }
    }
    igp_paths_free(&names);
    return ok;
}

char *igp_read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += got;
        if (cap - n < 2)
            buf = realloc(buf, cap *= 2);
    }
    bool failed = ferror(f);
    fclose(f);
    if (!buf || failed) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

bool igp_mkdirs(const char *dir)
{
    char *path = strdup(dir);
    bool ok = path != NULL;
    for (char *p = path + 1; ok && *p; p++)
        if (*p == '/') {
            *p = '\0';
            ok = mkdir(path, 0755) == 0 || errno == EEXIST;
            *p = '/';
        }
    ok = ok && (mkdir(path, 0755) == 0 || errno == EEXIST);
    free(path);
    return ok;
}

bool igp_write_text(const char *path, const char *text, oo_list *issues)
{
    char *dir = strdup(path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir)
        *slash = '\0';
    bool ok = !slash || slash == dir || igp_mkdirs(dir);
    free(dir);
    FILE *f = ok ? fopen(path, "wb") : NULL;
    ok = f && fwrite(text, 1, strlen(text), f) == strlen(text);
    if (f && fclose(f) != 0)
        ok = false;
    if (!ok)
        oo_add(issues, OO_ERROR, OO_EXCEPTION, NULL, 0, 0, "%s: cannot write: %s", path, strerror(errno));
    return ok;
}

bool igp_remove_tree(const char *dir)
{
    struct stat st;
    if (lstat(dir, &st) != 0)
        return errno == ENOENT;
    if (!S_ISDIR(st.st_mode))
        return unlink(dir) == 0;
    DIR *d = opendir(dir);
    if (!d)
        return false;
    bool ok = true;
    for (struct dirent *e; ok && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char *path = join(dir, e->d_name);
        ok = igp_remove_tree(path);
        free(path);
    }
    closedir(d);
    return ok && rmdir(dir) == 0;
}

/* ---- loading and checking ---------------------------------------------------------------- */

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static json_object *parse_file(const char *path, oo_list *issues, bool *io_ok)
{
    size_t len;
    char *text = igp_read_text(path, &len);
    if (!text) {
        oo_add(issues, OO_ERROR, OO_EXCEPTION, NULL, 0, 0, "%s: cannot read: %s", path, strerror(errno));
        *io_ok = false;
        return NULL;
    }
    json_tokener *tok = json_tokener_new();
    json_object *o = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error err = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    bool trailing = o && strspn(text + end, " \t\r\n") < len - end;
    if (!o || err != json_tokener_success || trailing) {
        oo_add(issues, OO_ERROR, OO_STRUCTURE, NULL, 0, 0, "%s: not JSON (%s, at byte %zu)", path,
               trailing ? "text after the value" : json_tokener_error_desc(err), end);
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    free(text);
    return o;
}

static void push_resource(igp_package *p, igp_resource r)
{
    if (p->count == p->capacity) {
        p->capacity = p->capacity ? p->capacity * 2 : 32;
        p->items = realloc(p->items, p->capacity * sizeof *p->items);
        if (!p->items)
            abort();
    }
    p->items[p->count++] = r;
}

static bool allowed_type(size_t folder, const char *type)
{
    for (size_t i = 0; i < 4 && packaged_folders[folder].types[i]; i++)
        if (!strcmp(packaged_folders[folder].types[i], type))
            return true;
    return false;
}

/* The file name, url and version conventions of one resource; issues for each one broken. */
static void check_identity(const igp_package *p, const igp_resource *r, oo_list *issues)
{
    char expected[1024];
    snprintf(expected, sizeof expected, "%s-%s.json", r->resource_type, r->id);
    if (strcmp(base_name(r->source), expected))
        oo_add(issues, OO_ERROR, OO_VALUE, r->resource_type, 0, 0, "%s: the file should be named %s", r->source,
               expected);
    if (r->example || !strcmp(r->resource_type, "NamingSystem")) /* R4's NamingSystem has no url or version */
        return;
    snprintf(expected, sizeof expected, "%s/%s/%s", p->canonical, r->resource_type, r->id);
    if (!r->url || strcmp(r->url, expected)) {
        char where[128];
        snprintf(where, sizeof where, "%s.url", r->resource_type);
        oo_add(issues, OO_ERROR, OO_VALUE, where, 0, 0, "%s: url is '%s', the guide's convention is %s", r->source,
               r->url ? r->url : "(none)", expected);
    }
    if (!r->version || strcmp(r->version, p->version)) {
        char where[128];
        snprintf(where, sizeof where, "%s.version", r->resource_type);
        oo_add(issues, OO_ERROR, OO_VALUE, where, 0, 0, "%s: version is '%s', the package's is %s", r->source,
               r->version ? r->version : "(none)", p->version);
    }
}

/* For a logical model (a specialization): the snapshot is the element list, each with its base. */
static void add_logical_snapshot(json_object *sd)
{
    if (igp_get(sd, "snapshot"))
        return;
    json_object *elements = igp_get(igp_get(sd, "differential"), "element");
    json_object *snap = json_object_new_array();
    for (size_t i = 0; i < igp_len(elements); i++) {
        json_object *copy = NULL;
        json_object *el = json_object_array_get_idx(elements, i);
        if (json_object_deep_copy(el, &copy, NULL) != 0)
            abort();
        json_object *base = json_object_new_object();
        const char *path = igp_str(el, "path");
        json_object_object_add(base, "path", json_object_new_string(path ? path : ""));
        json_object *min = igp_get(el, "min"), *max = igp_get(el, "max");
        json_object_object_add(base, "min", json_object_new_int(min ? json_object_get_int(min) : 0));
        json_object_object_add(base, "max", json_object_new_string(max ? json_object_get_string(max) : "*"));
        json_object_object_add(copy, "base", base);
        json_object_array_add(snap, copy);
    }
    json_object *wrapper = json_object_new_object();
    json_object_object_add(wrapper, "element", snap);
    json_object_object_add(sd, "snapshot", wrapper);
}

/* A model: kind logical, a specialization, type = its root element's name (ig/README.md). */
static void check_model(const igp_resource *r, oo_list *issues)
{
    const char *derivation = igp_str(r->json, "derivation");
    json_object *root = json_object_array_get_idx(igp_get(igp_get(r->json, "differential"), "element"), 0);
    const char *root_path = igp_str(root, "path");
    if (!r->kind || strcmp(r->kind, "logical") || !derivation || strcmp(derivation, "specialization"))
        oo_add(issues, OO_ERROR, OO_VALUE, "StructureDefinition.kind", 0, 0,
               "%s: a model is kind 'logical' and derivation 'specialization'", r->source);
    else if (!root_path || !r->type || strcmp(r->type, root_path))
        oo_add(issues, OO_ERROR, OO_VALUE, "StructureDefinition.type", 0, 0,
               "%s: a model's type is its root element's name ('%s')", r->source, root_path ? root_path : "?");
    else
        add_logical_snapshot(r->json);
}

/* Load one file into the package (checked); false only on I/O failure. */
static bool load_one(igp_package *p, const char *path, int folder, oo_list *issues)
{
    bool io_ok = true;
    json_object *o = parse_file(path, issues, &io_ok);
    if (!o)
        return io_ok;
    igp_resource r = {0};
    r.json = o;
    r.example = folder < 0;
    r.resource_type = igp_str(o, "resourceType");
    r.id = igp_str(o, "id");
    if (!r.resource_type || !r.id || (folder >= 0 && !allowed_type((size_t)folder, r.resource_type))) {
        oo_add(issues, OO_ERROR, OO_STRUCTURE, r.resource_type, 0, 0, "%s: %s", path,
               !r.resource_type ? "no resourceType: not a FHIR resource"
               : !r.id          ? "the resource has no id"
                                : "this folder does not hold that resource type");
        json_object_put(o);
        return true;
    }
    r.url = igp_str(o, "url");
    r.version = igp_str(o, "version");
    r.kind = igp_str(o, "kind");
    r.type = igp_str(o, "type");
    r.source = strdup(path);
    size_t n = strlen(r.resource_type) + strlen(r.id) + 7;
    r.filename = malloc(n);
    snprintf(r.filename, n, "%s-%s.json", r.resource_type, r.id);
    check_identity(p, &r, issues);
    if (folder >= 0 && !strcmp(packaged_folders[folder].folder, "models"))
        check_model(&r, issues);
    push_resource(p, r);
    return true;
}

static bool load_folder(igp_package *p, const char *source, const char *folder, int index, oo_list *issues)
{
    char *dir = join(source, folder);
    igp_paths files = {0};
    bool ok = igp_list_json(dir, true, &files);
    if (!ok)
        oo_add(issues, OO_ERROR, OO_EXCEPTION, NULL, 0, 0, "%s: cannot read the folder: %s", dir, strerror(errno));
    for (size_t i = 0; ok && i < files.count; i++)
        ok = load_one(p, files.paths[i], index, issues);
    igp_paths_free(&files);
    free(dir);
    return ok;
}

static bool load_manifest(igp_package *p, const char *source, oo_list *issues)
{
    char *path = join(source, "package.json");
    bool io_ok = true;
    p->manifest = parse_file(path, issues, &io_ok);
    p->name = igp_str(p->manifest, "name");
    p->version = igp_str(p->manifest, "version");
    p->canonical = igp_str(p->manifest, "canonical");
    if (p->manifest && (!p->name || !p->version || !p->canonical))
        oo_add(issues, OO_ERROR, OO_REQUIRED, NULL, 0, 0, "%s: name, version and canonical are required", path);
    free(path);
    return io_ok && p->name && p->version && p->canonical;
}

static int by_package_order(const void *a, const void *b)
{
    const igp_resource *x = a, *y = b;
    if (x->example != y->example)
        return x->example - y->example;
    return strcmp(x->filename, y->filename);
}

/* Ids unique per resource type (so file names are), and urls unique. */
static void check_unique(const igp_package *p, oo_list *issues)
{
    for (size_t i = 1; i < p->count; i++) {
        const igp_resource *a = &p->items[i - 1], *b = &p->items[i];
        if (a->example == b->example && !strcmp(a->filename, b->filename))
            oo_add(issues, OO_ERROR, OO_STRUCTURE, "id", 0, 0, "%s: %s '%s' is also defined by %s", b->source,
                   b->resource_type, b->id, a->source);
    }
}

/* Every example names at least one packaged profile in meta.profile, and only packaged ones. */
static void check_example_profiles(const igp_package *p, const igp_resource *r, oo_list *issues)
{
    json_object *profiles = igp_get(igp_get(r->json, "meta"), "profile");
    if (!igp_len(profiles))
        oo_add(issues, OO_ERROR, OO_REQUIRED, "meta.profile", 0, 0, "%s: an example names the profile it shows",
               r->source);
    for (size_t i = 0; i < igp_len(profiles); i++) {
        const char *url = json_object_get_string(json_object_array_get_idx(profiles, i));
        const igp_resource *sd = url ? igp_find(p, url) : NULL;
        if (!sd || strcmp(sd->resource_type, "StructureDefinition") || (sd->kind && !strcmp(sd->kind, "logical"))) {
            char where[64];
            snprintf(where, sizeof where, "%s.meta.profile[%zu]", r->resource_type, i);
            oo_add(issues, OO_ERROR, OO_NOT_FOUND, where, 0, 0, "%s: %s is not a profile of the package", r->source,
                   url ? url : "(not a string)");
        }
    }
}

bool igp_load(const char *source, igp_package *p, oo_list *issues)
{
    memset(p, 0, sizeof *p);
    if (!load_manifest(p, source, issues))
        return false;
    bool ok = true;
    for (size_t i = 0; ok && i < sizeof packaged_folders / sizeof *packaged_folders; i++)
        ok = load_folder(p, source, packaged_folders[i].folder, (int)i, issues);
    ok = ok && load_folder(p, source, "examples", -1, issues);
    if (p->count)
        qsort(p->items, p->count, sizeof *p->items, by_package_order);
    check_unique(p, issues);
    for (size_t i = 0; i < p->count; i++)
        if (p->items[i].example)
            check_example_profiles(p, &p->items[i], issues);
    return ok;
}

void igp_free(igp_package *p)
{
    for (size_t i = 0; i < p->count; i++) {
        free(p->items[i].source);
        free(p->items[i].filename);
        json_object_put(p->items[i].json);
    }
    free(p->items);
    json_object_put(p->manifest);
    memset(p, 0, sizeof *p);
}

const igp_resource *igp_find(const igp_package *p, const char *url)
{
    size_t n = strcspn(url, "|");
    for (size_t i = 0; i < p->count; i++) {
        const char *u = p->items[i].url;
        if (!p->items[i].example && u && strlen(u) == n && !strncmp(u, url, n))
            return &p->items[i];
    }
    return NULL;
}

/* ---- writing ----------------------------------------------------------------------------- */

static void index_add(json_object *files, const igp_resource *r)
{
    json_object *f = json_object_new_object();
    json_object_object_add(f, "filename", json_object_new_string(r->filename));
    json_object_object_add(f, "resourceType", json_object_new_string(r->resource_type));
    json_object_object_add(f, "id", json_object_new_string(r->id));
    const char *optional[][2] = {{"url", r->url}, {"version", r->version}, {"kind", r->kind}, {"type", r->type}};
    for (size_t i = 0; i < 4; i++)
        if (optional[i][1])
            json_object_object_add(f, optional[i][0], json_object_new_string(optional[i][1]));
    json_object_array_add(files, f);
}

static bool write_json(const char *dir, const char *name, json_object *o, oo_list *issues)
{
    char *path = join(dir, name);
    char *text = igp_serialise(o);
    bool ok = igp_write_text(path, text, issues);
    free(text);
    free(path);
    return ok;
}

/* One folder of the package: its resources (examples or not) and its .index.json. */
static bool write_folder(const igp_package *p, const char *dir, bool examples, oo_list *issues)
{
    json_object *index = json_object_new_object();
    json_object *files = json_object_new_array();
    json_object_object_add(index, "index-version", json_object_new_int(1));
    json_object_object_add(index, "files", files);
    bool ok = igp_mkdirs(dir);
    if (!ok)
        oo_add(issues, OO_ERROR, OO_EXCEPTION, NULL, 0, 0, "%s: cannot make the folder: %s", dir, strerror(errno));
    for (size_t i = 0; ok && i < p->count; i++)
        if (p->items[i].example == examples) {
            ok = write_json(dir, p->items[i].filename, p->items[i].json, issues);
            index_add(files, &p->items[i]);
        }
    ok = ok && write_json(dir, ".index.json", index, issues);
    json_object_put(index);
    return ok;
}

bool igp_write(const igp_package *p, const char *out, oo_list *issues)
{
    char *dir = join(out, "package");
    char *examples = join(dir, "example");
    bool ok = igp_remove_tree(dir);
    if (!ok)
        oo_add(issues, OO_ERROR, OO_EXCEPTION, NULL, 0, 0, "%s: cannot remove the previous package: %s", dir,
               strerror(errno));
    ok = ok && write_folder(p, dir, false, issues) && write_folder(p, examples, true, issues);
    ok = ok && write_json(dir, "package.json", p->manifest, issues);
    free(examples);
    free(dir);
    return ok;
}

/* ---- the validator over the package ------------------------------------------------------ */

pf_registry *igp_registry(const igp_package *p, oo_list *issues)
{
    pf_registry *r = pf_registry_new(NULL);
    for (size_t i = 0; r && i < p->count; i++) {
        const igp_resource *res = &p->items[i];
        if (res->example)
            continue;
        char *text = igp_serialise(res->json);
        pf_registry_add(r, text, strlen(text), res->source, issues);
        free(text);
    }
    if (r)
        pf_registry_finish(r, issues);
    return r;
}

size_t igp_validate_examples(const igp_package *p, const pf_registry *r, oo_list *issues)
{
    size_t before = issues->errors;
    fv_options options = {0};
    options.profiles = r;
    for (size_t i = 0; i < p->count; i++) {
        if (!p->items[i].example)
            continue;
        size_t len; /* the source text, so that lines and columns are the file's */
        char *text = igp_read_text(p->items[i].source, &len);
        if (!text) {
            oo_add(issues, OO_ERROR, OO_EXCEPTION, NULL, 0, 0, "%s: cannot read: %s", p->items[i].source,
                   strerror(errno));
            continue;
        }
        oo_list found;
        oo_list_init(&found, 0);
        fv_validate_buffer(text, len, &options, &found);
        for (size_t k = 0; k < found.count; k++) {
            const oo_issue *is = &found.items[k];
            if (is->severity <= OO_WARNING)
                oo_add(issues, is->severity, is->code, is->expression, is->line, is->column, "%s: %s",
                       p->items[i].source, is->message);
        }
        oo_list_free(&found);
        free(text);
    }
    return issues->errors - before;
}
