/*
 * gateway/rest/rest_transform.c — the app's insurer maps and
 * POST StructureMap/$transform (see rest_transform.h).
 *
 * $transform (http://hl7.org/fhir/R4/structuremap-operation-transform.html):
 *   POST /StructureMap/{id}/$transform        a stored StructureMap
 *   POST /StructureMap/$transform?source=URL  a shipped map (or a stored one) by its canonical URL
 * The body is the source, or a Parameters with `source` (a uri) and
 * `content` (the source resource). The answer is the target: a FHIR
 * resource (application/fhir+json) or an instance of the insurer's model
 * (application/json, resourceType = the model's type).
 *
 * Access (docs/access.md): the map runs over the posted content only;
 * nothing stored is read but the StructureMap itself, which the caller must
 * be able to read (its own: 404 otherwise). Care providers run any map.
 * Insurers run the shipped maps whose source is the insurer's model (their
 * own records to FHIR): a map from FHIR would hand them pseudonym() of any
 * BSN they post, which is what the pseudonym keeps from them.
 */
#include "gateway/rest/rest_transform.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/array.h"
#include "gateway/rest/answer.h"
#include "gateway/rest/handlers.h"
#include "gateway/rest/rest_access.h"
#include "gateway/rest/rest_write.h"
#include "gateway/util/files.h"

#define MODEL_CONTENT_TYPE "application/json; charset=utf-8"

/* A ConceptMap as read from disk, kept for the sets made per request (stored maps). */
typedef struct kept_text {
    char *name, *text;
    size_t len;
} kept_text;

struct rest_maps {
    mps_set *set;
    const pf_registry *registry;
    const mpn_key *key;
    kept_text *conceptmaps;
    size_t conceptmap_count, conceptmap_cap;
    const sm_map **maps;
    size_t map_count, map_cap;
};

void rest_maps_free(rest_maps *m)
{
    if (!m)
        return;
    mps_free(m->set);
    for (size_t i = 0; i < m->conceptmap_count; i++) {
        free(m->conceptmaps[i].name);
        free(m->conceptmaps[i].text);
    }
    free(m->conceptmaps);
    free(m->maps);
    free(m);
}

/* The first error of issues into err. */
static void first_error(const oo_list *issues, const char *fallback, char *err, size_t errlen)
{
    for (size_t i = 0; i < issues->count; i++)
        if (issues->items[i].severity <= OO_ERROR) {
            snprintf(err, errlen, "%s", issues->items[i].message);
            return;
        }
    snprintf(err, errlen, "%s", fallback);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.map files of dir, in name order (paths, malloc'd); false when dir cannot be read. */
static bool map_files(const char *dir, file_list *out)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".map"))
            continue;
        char *path = malloc(strlen(dir) + n + 2);
        if (!path || !fa_reserve(&out->paths, &out->capacity, out->count + 1, sizeof *out->paths)) {
            free(path);
            closedir(d);
            return false;
        }
        sprintf(path, "%s/%s", dir, e->d_name);
        out->paths[out->count++] = path;
    }
    closedir(d);
    qsort(out->paths, out->count, sizeof *out->paths, by_name);
    return true;
}

/* Every ConceptMap of dir/conceptmaps into the set, and kept. */
static bool load_conceptmaps(rest_maps *m, const char *dir, oo_list *issues)
{
    char folder[4096];
    snprintf(folder, sizeof folder, "%s/conceptmaps", dir);
    file_list files = {0};
    bool ok = files_collect(&files, folder, "fhirgw serve");
    for (size_t i = 0; ok && i < files.count; i++) {
        kept_text t = {strdup(files.paths[i]), NULL, 0};
        t.text = files_read(files.paths[i], &t.len);
        ok = t.name && t.text &&
             fa_reserve(&m->conceptmaps, &m->conceptmap_cap, m->conceptmap_count + 1, sizeof *m->conceptmaps);
        if (ok)
            m->conceptmaps[m->conceptmap_count++] = t;
        else {
            free(t.name);
            free(t.text);
            oo_add(issues, OO_ERROR, OO_EXCEPTION, NULL, 0, 0, "%s: cannot be read", files.paths[i]);
        }
        ok = ok && mps_add_conceptmap(m->set, t.text, t.len, t.name, issues);
    }
    files_list_free(&files);
    return ok;
}

static bool load_maps(rest_maps *m, const char *dir, oo_list *issues)
{
    file_list files = {0};
    bool ok = map_files(dir, &files);
    if (!ok)
        oo_add(issues, OO_ERROR, OO_EXCEPTION, NULL, 0, 0, "%s: the maps folder cannot be read", dir);
    for (size_t i = 0; ok && i < files.count; i++) {
        size_t len = 0;
        char *text = files_read(files.paths[i], &len);
        const sm_map *map = text ? mps_add_map(m->set, text, len, files_base_name(files.paths[i]), issues) : NULL;
        free(text);
        ok = map && fa_reserve(&m->maps, &m->map_cap, m->map_count + 1, sizeof *m->maps);
        if (ok)
            m->maps[m->map_count++] = map;
        else if (!text)
            oo_add(issues, OO_ERROR, OO_EXCEPTION, NULL, 0, 0, "%s: cannot be read", files.paths[i]);
    }
    files_list_free(&files);
    return ok;
}

rest_maps *rest_maps_load(const char *dir, const pf_registry *registry, const mpn_key *key, char *err, size_t errlen)
{
    oo_list issues;
    oo_list_init(&issues, 0);
    rest_maps *m = calloc(1, sizeof *m);
    bool ok = m && (m->set = mps_new(registry, key, &issues));
    if (ok) {
        m->registry = registry;
        m->key = key;
        ok = load_conceptmaps(m, dir, &issues) && load_maps(m, dir, &issues);
    }
    if (!ok) {
        first_error(&issues, "out of memory", err, errlen);
        rest_maps_free(m);
        m = NULL;
    }
    oo_list_free(&issues);
    return m;
}

const sm_map *rest_maps_find(const rest_maps *m, const char *url)
{
    for (size_t i = 0; m && url && i < m->map_count; i++)
        if (m->maps[i]->url && !strcmp(m->maps[i]->url, url))
            return m->maps[i];
    return NULL;
}

/* Run map and validate what it made: 0 with *out, or 422 with issues naming the map. */
static int run_checked(const mps_set *set, const sm_map *map, const char *name, const fj_doc *doc, uint32_t node,
                       json_object **out, oo_list *issues)
{
    mpe_options mo = {.skip_unmapped = true};
    if (!mps_run(set, map, doc, node, &mo, out, issues))
        return 422;
    oo_list invalid;
    oo_list_init(&invalid, 0);
    size_t errors = mps_validate(set, *out, &invalid);
    for (size_t i = 0; errors && i < invalid.count; i++)
        if (invalid.items[i].severity <= OO_ERROR)
            oo_add(issues, OO_ERROR, OO_PROCESSING, invalid.items[i].expression, 0, 0,
                   "%s: the result is invalid, the source does not fit the map: %s", name, invalid.items[i].message);
    oo_list_free(&invalid);
    if (!errors)
        return 0;
    json_object_put(*out);
    *out = NULL;
    return 422;
}

int rest_maps_run(const rest_maps *m, const char *url, const fj_doc *doc, uint32_t node, json_object **out,
                  oo_list *issues)
{
    *out = NULL;
    const sm_map *map = rest_maps_find(m, url);
    if (!map) {
        oo_add(issues, OO_ERROR, OO_EXCEPTION, NULL, 0, 0, "the gateway ships no map %s", url);
        return 500;
    }
    return run_checked(m->set, map, mps_map_name(m->set, map), doc, node, out, issues);
}

bool rest_maps_is_fhir(const rest_app *app, const json_object *result)
{
    const char *rt = json_object_get_string(json_object_object_get(result, "resourceType"));
    const fs_type *t = rt ? fs_type_by_name(app->schema, rt, strlen(rt)) : NULL;
    return t && t->kind == FS_RESOURCE;
}

/* ---- $transform ---- */

typedef struct transform {
    char *text; /* the body, parsed in place */
    fj_doc doc;
    bool parsed;
    uint32_t content; /* the source's node */
    char *source;     /* the canonical URL asked for (query or Parameters), or NULL */
    mps_set *scratch; /* a stored map's own set */
    const mps_set *set;
    const sm_map *map;
    char name[96]; /* the map, for messages: its file, or StructureMap/<id> */
} transform;

static bool str_is(const fj_doc *d, uint32_t v, const char *s)
{
    return v != UINT32_MAX && d->nodes[v].type == FJ_STRING && fj_str_eq(d, v, s);
}

/* A string value of a parameter (valueUri, valueCanonical, valueString) as a malloc'd C string, or NULL. */
static char *param_string(const fj_doc *d, uint32_t p)
{
    static const char *const kinds[] = {"valueUri", "valueCanonical", "valueString", "valueUrl"};
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) {
        uint32_t v = fj_get(d, p, kinds[i]);
        if (v != UINT32_MAX && d->nodes[v].type == FJ_STRING)
            return strndup(fj_str(d, v), d->nodes[v].len);
    }
    return NULL;
}

/*
 * The source and, for a Parameters that wraps one, the `source` URL. A
 * Parameters without a `content` parameter is itself the source (a map may
 * take Parameters). 0, or the status with issues.
 */
static int read_body(rq *q, transform *t, oo_list *issues)
{
    const unsigned char *body;
    size_t len;
    if (!rest_json_body(q, &body, &len))
        return -1;
    if (!(t->text = strndup((const char *)body, len))) {
        oo_add(issues, OO_ERROR, "transient", NULL, 0, 0, "out of memory");
        return 503;
    }
    fj_error err;
    if (!(t->parsed = fj_parse(t->text, len, NULL, &t->doc, &err))) {
        oo_add(issues, OO_FATAL, OO_STRUCTURE, NULL, err.line, err.column, "invalid JSON: %s", err.message);
        return 400;
    }
    const fj_doc *d = &t->doc;
    if (d->nodes[0].type != FJ_OBJECT || !str_is(d, fj_get(d, 0, "resourceType"), "Parameters"))
        return 0;
    uint32_t params = fj_get(d, 0, "parameter");
    uint32_t p = params != UINT32_MAX && d->nodes[params].type == FJ_ARRAY ? params + 1 : UINT32_MAX;
    for (uint32_t i = 0; p != UINT32_MAX && i < d->nodes[params].len; i++, p = fj_next(d, p)) {
        uint32_t name = fj_get(d, p, "name");
        if (str_is(d, name, "content") && fj_get(d, p, "resource") != UINT32_MAX)
            t->content = fj_get(d, p, "resource");
        else if (str_is(d, name, "source") && !t->source && !(t->source = param_string(d, p))) {
            oo_add(issues, OO_ERROR, "required", "Parameters.parameter", 0, 0,
                   "the parameter source is the map's canonical URL (valueUri)");
            return 400;
        }
    }
    return 0;
}

/* ?source=<url> of a type-level call. */
static void query_source(rq *q, transform *t)
{
    const char *query = srv_req_query(q->req);
    for (const char *p = query; p && *p; p += strcspn(p, "&"), p += *p == '&') {
        if (!strncmp(p, "source=", 7) && !t->source)
            t->source = sq_url_decode(p + 7, strcspn(p + 7, "&"));
    }
}

/* A stored StructureMap the caller may read: its own set. 0, or the status (answered when -1). */
static int use_stored(rq *q, transform *t, const st_resource *r, oo_list *issues)
{
    az_decision d = rest_decide(q, AZ_READ, "StructureMap", r, NULL);
    if (d == AZ_HIDDEN) {
        rest_answer_not_known(q, "StructureMap", r->id, NULL);
        return -1;
    }
    if (d != AZ_ALLOW) {
        oo_add(issues, OO_ERROR, "forbidden", NULL, 0, 0,
               "this organisation reads no StructureMap; insurers run the maps the gateway ships");
        return 403;
    }
    const rest_maps *m = q->app->maps;
    snprintf(t->name, sizeof t->name, "StructureMap/%s", r->id);
    if (!(t->scratch = mps_new(m->registry, m->key, issues)))
        return 503;
    for (size_t i = 0; i < m->conceptmap_count; i++)
        mps_add_conceptmap(t->scratch, m->conceptmaps[i].text, m->conceptmaps[i].len, m->conceptmaps[i].name, issues);
    t->set = t->scratch;
    t->map = mps_add_map(t->scratch, r->json, r->json_len, t->name, issues);
    return t->map ? 0 : 422;
}

/* /StructureMap/{id}/$transform */
static int stored_by_id(rq *q, transform *t, oo_list *issues)
{
    st_resource r;
    st_error err;
    st_status s = st_read(q->app->opt.store, "StructureMap", q->route.id, &r, &err);
    if (s == ST_NOT_FOUND || s == ST_GONE) {
        if (s == ST_GONE)
            st_resource_free(&r);
        rest_record_decision(q, AZ_READ, "StructureMap", AZ_HIDDEN, 404, "no such resource", NULL);
        rest_answer_not_known(q, "StructureMap", q->route.id, NULL);
        return -1;
    }
    if (s != ST_OK) {
        oo_add(issues, OO_ERROR, rest_code_of(s), NULL, 0, 0, "the store failed: %s", err.message);
        return rest_status_of(s);
    }
    int status = use_stored(q, t, &r, issues);
    st_resource_free(&r);
    return status;
}

/* The caller's own StructureMap whose url is t->source, when no shipped map has it. */
static int stored_by_url(rq *q, transform *t, oo_list *issues)
{
    st_value v = {0};
    v.v.uri.uri = t->source;
    st_condition c = {.param = "url", .kind = ST_KIND_URI, .values = &v, .value_count = 1};
    const char *visible[] = {q->caller.ura};
    st_query sq = {.type = "StructureMap",
                   .conditions = &c,
                   .condition_count = 1,
                   .visible_to = visible,
                   .visible_to_count = 1,
                   .count = 2};
    st_list found = {0};
    st_error err;
    st_status s = st_search(q->app->opt.store, &sq, &found, &err);
    int status = 0;
    if (s != ST_OK) {
        oo_add(issues, OO_ERROR, rest_code_of(s), NULL, 0, 0, "the store failed: %s", err.message);
        status = rest_status_of(s);
    } else if (found.count != 1) {
        char echo[RT_ECHO_SIZE];
        oo_add(issues, OO_ERROR, found.count ? "multiple-matches" : OO_NOT_FOUND, "source", 0, 0,
               found.count ? "more than one StructureMap has the url %s" : "no map has the url %s",
               rt_echo(t->source, echo));
        status = found.count ? 412 : 404;
    } else {
        status = use_stored(q, t, &found.items[0], issues);
    }
    st_list_free(&found);
    return status;
}

/* Which map: the stored one the URL names, a shipped map by url, or a stored one by url. */
static int find_map(rq *q, transform *t, oo_list *issues)
{
    if (q->route.id[0])
        return stored_by_id(q, t, issues);
    if (!t->source) {
        oo_add(issues, OO_ERROR, "required", "source", 0, 0,
               "StructureMap/$transform needs source: the canonical URL of the map (?source= or a Parameters "
               "parameter)");
        return 400;
    }
    if ((t->map = rest_maps_find(q->app->maps, t->source))) {
        t->set = q->app->maps->set;
        snprintf(t->name, sizeof t->name, "%s", mps_map_name(t->set, t->map));
        return 0;
    }
    return stored_by_url(q, t, issues);
}

/* Insurers transform their own model only (see the top of the file). */
static int check_insurer(rq *q, const transform *t, oo_list *issues)
{
    if (q->caller.roles & AZ_CARE_ROLES)
        return 0;
    const char *type = mps_source_type(t->map);
    const fs_type *ft = type ? fs_type_by_name(q->app->schema, type, strlen(type)) : NULL;
    if (!ft)
        return 0;
    rest_record_decision(q, AZ_READ, "StructureMap", AZ_FORBIDDEN, 403, "insurer: a map from FHIR", NULL);
    oo_add(issues, OO_ERROR, "forbidden", NULL, 0, 0,
           "%s maps %s: insurers transform the insurer's model only (a map from FHIR would compute patient "
           "pseudonyms for them)",
           t->name, type);
    return 403;
}

/*
 * Run over the content: a wrapped one as a document of its own, so that a
 * Bundle's entries are found as they are when the Bundle is posted bare
 * (the entry of the map's source type, resolve() within the Bundle).
 */
static int run_content(transform *t, json_object **out, oo_list *issues)
{
    if (!t->content)
        return run_checked(t->set, t->map, t->name, &t->doc, UINT32_MAX, out, issues);
    fj_buf b = {0};
    fj_write(&t->doc, t->content, NULL, &b);
    size_t len = 0;
    char *text = fj_buf_take(&b, &len);
    fj_doc doc;
    fj_error err;
    int status = 503;
    if (text && fj_parse(text, len, NULL, &doc, &err)) {
        status = run_checked(t->set, t->map, t->name, &doc, UINT32_MAX, out, issues);
        fj_doc_free(&doc);
    } else {
        oo_add(issues, OO_ERROR, "transient", NULL, 0, 0, "out of memory");
    }
    free(text);
    return status;
}

void rest_maps_answer(rq *q, int status, const json_object *result)
{
    const char *text = json_object_to_json_string_ext((json_object *)result,
                                                      JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    size_t len = strlen(text);
    char *body = strndup(text, len);
    if (!body) {
        rq_respond_outcome(q, 503, OO_ERROR, "transient", NULL, "out of memory");
        return;
    }
    if (!rest_maps_is_fhir(q->app, result))
        q->content_type = MODEL_CONTENT_TYPE;
    rq_respond_json(q, status, body, len);
}

bool rest_maps_ready(rq *q)
{
    if (q->app->maps)
        return true;
    rq_respond_outcome(q, 503, OO_ERROR, "transient", NULL, "this gateway was started without its maps (maps_dir)");
    return false;
}

bool rest_transform_op(rq *q)
{
    if (!rest_maps_ready(q))
        return false;
    transform t = {0};
    oo_list issues;
    oo_list_init(&issues, 0);
    int status = read_body(q, &t, &issues);
    if (!status)
        query_source(q, &t);
    if (!status)
        status = find_map(q, &t, &issues);
    if (!status)
        status = check_insurer(q, &t, &issues);
    json_object *result = NULL;
    if (!status)
        status = run_content(&t, &result, &issues);
    if (status > 0)
        rq_respond_issues(q, status, &issues);
    else if (!status)
        rest_maps_answer(q, 200, result);
    json_object_put(result);
    oo_list_free(&issues);
    mps_free(t.scratch);
    free(t.source);
    if (t.parsed)
        fj_doc_free(&t.doc);
    free(t.text);
    return false;
}
