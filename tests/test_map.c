/*
 * tests/test_map.c — the insurer maps of mappings/maps/2026 over the
 * implementation guide's fixtures: every fixture is part of a source that a
 * map takes to the insurer's model; every result is valid against its
 * logical model; the way back is valid FHIR; FHIR -> insurer -> FHIR returns
 * every element the map read unchanged (the patient as a Reference by
 * pseudonym) and insurer -> FHIR -> insurer returns the record unchanged; no
 * BSN, name, address or birth date of the fixtures reaches the insurer; the
 * ConceptMaps are each other's inverse; pseudonym() is HMAC-SHA-256; and
 * every kind of bad input fails with an error naming the map file and line
 * or the element, never with a partial record.
 *
 * Memory: every test frees what it makes; the set and registry are made per
 * test process (setup) and freed in teardown.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/json.h"
#include "gateway/util/conformance.h"
#include "gateway/util/files.h"
#include "mappings/mapset.h"
#include "json_compare.h"

#define SRC TESTS_DIR "/.."
#define MAPS SRC "/mappings/maps/2026"
#define FIX SRC "/ig/fixtures"

static pf_registry *registry;
static mps_set *set;
static mpn_key test_key;

typedef struct pair {
    const char *to, *back; /* map file names */
    const sm_map *m_to, *m_back;
} pair;

static pair pairs[] = {
    {"organization-to-provider.map", "provider-to-organization.map", NULL, NULL},
    {"encounter-to-stay.map", "stay-to-encounter.map", NULL, NULL},
    {"careplan-to-treatment-plan.map", "treatment-plan-to-careplan.map", NULL, NULL},
    {"contract-to-insurer.map", "insurer-to-contract.map", NULL, NULL},
    {"compliance-report.map", "compliance-report-to-parameters.map", NULL, NULL},
};
enum { P_ORG, P_STAY, P_PLAN, P_CONTRACT, P_REPORT, P_COUNT };

static void print_issues(const oo_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        if (l->items[i].severity <= OO_ERROR)
            fprintf(stderr, "  %s%s%s\n", l->items[i].message, l->items[i].expression ? " at " : "",
                    l->items[i].expression ? l->items[i].expression : "");
}

static char *read_text(const char *path, size_t *len)
{
    char *t = files_read(path, len);
    cr_assert_not_null(t, "cannot read %s", path);
    return t;
}

static void setup(void)
{
    oo_list issues;
    oo_list_init(&issues, 0);
    const char *dirs[] = {SRC "/ig/profiles", SRC "/ig/extensions", SRC "/ig/terminology", SRC "/ig/models"};
    registry = conf_load(dirs, 4, &issues);
    cr_assert(registry && !issues.errors, "the guide did not load");
    char err[128];
    const char *hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    cr_assert(mpn_key_from_hex(hex, strlen(hex), &test_key, err, sizeof err), "%s", err);
    set = mps_new(registry, &test_key, &issues);
    cr_assert_not_null(set);
    DIR *d = opendir(MAPS "/conceptmaps");
    cr_assert_not_null(d);
    for (struct dirent *e; (e = readdir(d));) {
        if (!strstr(e->d_name, ".json"))
            continue;
        char path[512];
        size_t len;
        snprintf(path, sizeof path, "%s/conceptmaps/%s", MAPS, e->d_name);
        char *t = read_text(path, &len);
        cr_assert(mps_add_conceptmap(set, t, len, e->d_name, &issues), "%s", e->d_name);
        free(t);
    }
    closedir(d);
    for (int i = 0; i < P_COUNT; i++) {
        const char *names[2] = {pairs[i].to, pairs[i].back};
        const sm_map **out[2] = {&pairs[i].m_to, &pairs[i].m_back};
        for (int k = 0; k < 2; k++) {
            char path[512];
            size_t len;
            snprintf(path, sizeof path, "%s/%s", MAPS, names[k]);
            char *t = read_text(path, &len);
            *out[k] = mps_add_map(set, t, len, names[k], &issues);
            if (!*out[k])
                print_issues(&issues);
            cr_assert_not_null(*out[k], "%s did not load", names[k]);
            free(t);
        }
    }
    oo_list_free(&issues);
}

static void teardown(void)
{
    mps_free(set);
    pf_registry_free(registry);
}

TestSuite(map, .init = setup, .fini = teardown, .timeout = 120);

/* ---- the fixtures as sources ------------------------------------------------ */

static json_object *load_json(const char *path)
{
    json_object *o = json_object_from_file(path);
    cr_assert_not_null(o, "cannot parse %s", path);
    return o;
}

/* The length of an array, 0 for anything else (json-c asserts on non-arrays). */
static size_t alen(json_object *a)
{
    return json_object_is_type(a, json_type_array) ? json_object_array_length(a) : 0;
}

static const char *jstr(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : NULL;
}

typedef struct fixture {
    char path[400];
    json_object *res;
    bool used;
} fixture;

typedef struct fixtures {
    fixture items[200];
    size_t count;
} fixtures;

static void collect(fixtures *f, const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s", dir);
    for (struct dirent *e; (e = readdir(d));) {
        if (!strstr(e->d_name, ".json"))
            continue;
        fixture *x = &f->items[f->count++];
        snprintf(x->path, sizeof x->path, "%s/%s", dir, e->d_name);
        x->res = load_json(x->path);
        x->used = false;
    }
    closedir(d);
}

static void load_fixtures(fixtures *f)
{
    f->count = 0;
    collect(f, FIX "/parties");
    collect(f, FIX "/stays");
    collect(f, FIX "/contracts");
    collect(f, FIX "/gzsp");
    collect(f, TESTS_DIR "/maps");
}

static void free_fixtures(fixtures *f)
{
    for (size_t i = 0; i < f->count; i++)
        json_object_put(f->items[i].res);
}

/* The fixture "Type/id" (marked used), or NULL. */
static fixture *find(fixtures *f, const char *ref)
{
    for (size_t i = 0; ref && i < f->count; i++) {
        const char *rt = jstr(f->items[i].res, "resourceType"), *id = jstr(f->items[i].res, "id");
        size_t n = rt ? strlen(rt) : 0;
        if (rt && id && !strncmp(ref, rt, n) && ref[n] == '/' && !strcmp(ref + n + 1, id))
            return &f->items[i];
    }
    return NULL;
}

static void add_entry(json_object *bundle, fixture *x)
{
    char url[300];
    snprintf(url, sizeof url, "https://fhirgw.nl/fhir/%s/%s", jstr(x->res, "resourceType"), jstr(x->res, "id"));
    json_object *e = json_object_new_object();
    json_object_object_add(e, "fullUrl", json_object_new_string(url));
    json_object_object_add(e, "resource", json_object_get(x->res));
    json_object_array_add(json_object_object_get(bundle, "entry"), e);
    x->used = true;
}

static json_object *new_bundle(void)
{
    json_object *b = json_object_new_object();
    json_object_object_add(b, "resourceType", json_object_new_string("Bundle"));
    json_object_object_add(b, "type", json_object_new_string("collection"));
    json_object_object_add(b, "entry", json_object_new_array());
    return b;
}

static const char *ref_of(json_object *o, const char *k1, const char *k2)
{
    json_object *v = json_object_object_get(o, k1);
    if (json_object_is_type(v, json_type_array))
        v = json_object_array_get_idx(v, 0);
    return jstr(v, k2);
}

typedef struct source {
    int pair;
    json_object *doc;
    char name[400];
} source;

/* One source per map input built from the fixtures: Bundles where the map takes one, or the resolver needs one. */
static size_t build_sources(fixtures *f, source *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < f->count && n < cap; i++) {
        fixture *x = &f->items[i];
        const char *rt = jstr(x->res, "resourceType");
        source *s = &out[n];
        snprintf(s->name, sizeof s->name, "%s", x->path);
        if (!strcmp(rt, "Organization")) {
            char ref[200];
            snprintf(ref, sizeof ref, "Organization/%s", jstr(x->res, "id"));
            s->pair = P_ORG, s->doc = new_bundle();
            add_entry(s->doc, x);
            for (size_t k = 0; k < f->count; k++)
                if (!strcmp(jstr(f->items[k].res, "resourceType"), "Location") &&
                    !strcmp(ref_of(f->items[k].res, "managingOrganization", "reference"), ref))
                    add_entry(s->doc, &f->items[k]);
        } else if (!strcmp(rt, "Encounter")) {
            s->pair = P_STAY, s->doc = new_bundle();
            add_entry(s->doc, x);
            fixture *p = find(f, ref_of(x->res, "subject", "reference"));
            cr_assert_not_null(p, "%s: no patient", x->path);
            add_entry(s->doc, p);
            json_object *ext = json_object_object_get(x->res, "extension");
            for (size_t k = 0; k < alen(ext); k++) {
                fixture *t = find(f, ref_of(json_object_array_get_idx(ext, k), "valueReference", "reference"));
                if (t)
                    add_entry(s->doc, t);
            }
        } else if (!strcmp(rt, "Contract")) {
            s->pair = P_CONTRACT, s->doc = new_bundle();
            add_entry(s->doc, x);
            fixture *ins = find(f, ref_of(x->res, "authority", "reference"));
            cr_assert_not_null(ins);
            add_entry(s->doc, ins);
        } else if (!strcmp(rt, "CarePlan")) {
            s->pair = P_PLAN, s->doc = new_bundle();
            add_entry(s->doc, x);
            fixture *ct = find(f, ref_of(x->res, "careTeam", "reference"));
            cr_assert_not_null(ct, "%s: no team", x->path);
            add_entry(s->doc, ct);
            json_object *parts = json_object_object_get(ct->res, "participant");
            for (size_t k = 0; k < alen(parts); k++) {
                fixture *pr = find(f, ref_of(json_object_array_get_idx(parts, k), "member", "reference"));
                if (pr)
                    add_entry(s->doc, pr);
            }
            json_object *goals = json_object_object_get(x->res, "goal");
            for (size_t k = 0; k < alen(goals); k++)
                add_entry(s->doc, find(f, jstr(json_object_array_get_idx(goals, k), "reference")));
            const char *subject = ref_of(x->res, "subject", "reference");
            add_entry(s->doc, find(f, subject));
            for (size_t k = 0; k < f->count; k++)
                if (!strcmp(jstr(f->items[k].res, "resourceType"), "Coverage") &&
                    !strcmp(ref_of(f->items[k].res, "beneficiary", "reference"), subject))
                    add_entry(s->doc, &f->items[k]);
        } else if (!strcmp(rt, "Parameters")) {
            s->pair = P_REPORT, s->doc = json_object_get(x->res);
            x->used = true;
        } else if (!strcmp(rt, "Bundle")) {
            /* the transaction Bundles: the stay with its patient; the plan, which names an existing patient */
            json_object *entries = json_object_object_get(x->res, "entry");
            s->pair = -1;
            for (size_t k = 0; k < alen(entries); k++) {
                const char *t = jstr(json_object_object_get(json_object_array_get_idx(entries, k), "resource"),
                                     "resourceType");
                if (!strcmp(t, "Encounter"))
                    s->pair = P_STAY;
                if (!strcmp(t, "CarePlan")) {
                    s->pair = P_PLAN;
                    json_object *cp = json_object_object_get(json_object_array_get_idx(entries, k), "resource");
                    fixture *p = find(f, ref_of(cp, "subject", "reference"));
                    cr_assert_not_null(p);
                    p->used = true;
                    json_object *e = json_object_new_object();
                    json_object_object_add(e, "fullUrl", json_object_new_string("https://fhirgw.nl/fhir/Patient/x"));
                    json_object_object_add(e, "resource", json_object_get(p->res));
                    json_object_array_add(entries, e);
                }
            }
            cr_assert_neq(s->pair, -1, "%s: no map takes this Bundle", x->path);
            s->doc = json_object_get(x->res);
            x->used = true;
        } else {
            continue; /* Patients, Locations, Tasks, teams, roles, goals, coverages: part of the sources above */
        }
        n++;
    }
    return n;
}

/* ---- JSON comparison ------------------------------------------------------- */

/* Every member of `part` is in `whole` with the same value; arrays match item by item in any order. */
static bool contained(json_object *part, json_object *whole)
{
    json_type tp = json_object_get_type(part);
    if (tp == json_type_object) {
        if (!json_object_is_type(whole, json_type_object))
            return false;
        json_object_object_foreach(part, k, v)
        {
            json_object *w;
            if (!json_object_object_get_ex(whole, k, &w) || !contained(v, w))
                return false;
        }
        return true;
    }
    if (tp == json_type_array) {
        if (!json_object_is_type(whole, json_type_array))
            return false;
        size_t n = json_object_array_length(whole);
        bool taken[256] = {0};
        for (size_t i = 0; i < json_object_array_length(part); i++) {
            bool found = false;
            for (size_t j = 0; j < n && j < 256 && !found; j++)
                if (!taken[j] && contained(json_object_array_get_idx(part, i), json_object_array_get_idx(whole, j)))
                    taken[j] = found = true;
            if (!found)
                return false;
        }
        return true;
    }
    return tj_same(part, whole);
}

/* Remove the element at an issue path ("Bundle.entry[0].resource.text") from root. */
static void prune_path(json_object *root, const char *path)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", path);
    char *p = strchr(buf, '.');
    if (!p)
        return;
    json_object *cur = root, *parent = NULL;
    char *key = NULL;
    long idx = -1;
    for (char *tok = strtok(p + 1, "."); tok; tok = strtok(NULL, ".")) {
        char *br = strchr(tok, '[');
        long i = -1;
        if (br) {
            i = strtol(br + 1, NULL, 10);
            *br = 0;
        }
        parent = cur, key = tok, idx = i;
        cur = json_object_object_get(cur, tok);
        if (i >= 0 && !json_object_is_type(cur, json_type_array))
            return;
        if (i >= 0) {
            parent = cur;
            cur = json_object_array_get_idx(cur, (size_t)i);
        }
        if (!cur)
            return;
    }
    if (idx >= 0) /* blank the array item (indices of the other issues stay right); emptied later */
        json_object_array_put_idx(parent, (size_t)idx, json_object_new_object());
    else
        json_object_object_del(parent, key);
}

/* Drop empty objects and arrays (an object with only resourceType counts as empty). */
static bool empty_after_compact(json_object *o)
{
    if (json_object_is_type(o, json_type_object)) {
        const char *keys[256];
        size_t n = 0;
        json_object_object_foreach(o, k, v)
        {
            if (n < 256 && empty_after_compact(v))
                keys[n++] = k;
        }
        for (size_t i = 0; i < n; i++)
            json_object_object_del(o, keys[i]);
        size_t len = json_object_object_length(o);
        return !len || (len == 1 && json_object_object_get(o, "resourceType"));
    }
    if (json_object_is_type(o, json_type_array)) {
        for (size_t i = json_object_array_length(o); i-- > 0;)
            if (empty_after_compact(json_object_array_get_idx(o, i)))
                json_object_array_del_idx(o, i, 1);
        return json_object_array_length(o) == 0;
    }
    return false;
}

/* The resource the map took (the root, or the Bundle entry the unmapped paths start at), less its unmapped elements. */
static json_object *mapped_part(json_object *doc, const oo_list *issues)
{
    json_object *root = doc;
    for (size_t k = 0; k < issues->count; k++) {
        const char *m = issues->items[k].message;
        if (issues->items[k].severity != OO_INFORMATION || strncmp(m, "unmapped: ", 10))
            continue;
        size_t n = strcspn(m + 10, ".[");
        const char *rt = jstr(doc, "resourceType");
        if (rt && strlen(rt) == n && !strncmp(rt, m + 10, n))
            break;
        json_object *entries = json_object_object_get(doc, "entry");
        for (size_t e = 0; e < alen(entries); e++) {
            json_object *r = json_object_object_get(json_object_array_get_idx(entries, e), "resource");
            const char *t = jstr(r, "resourceType");
            if (t && strlen(t) == n && !strncmp(t, m + 10, n)) {
                root = r;
                break;
            }
        }
        break;
    }
    json_object *copy = NULL;
    json_object_deep_copy(root, &copy, NULL);
    for (size_t k = 0; k < issues->count; k++)
        if (issues->items[k].severity == OO_INFORMATION && !strncmp(issues->items[k].message, "unmapped: ", 10))
            prune_path(copy, issues->items[k].message + 10);
    empty_after_compact(copy);
    return copy;
}

/* ---- running ---------------------------------------------------------------- */

static json_object *run_on(const sm_map *m, json_object *src, bool want_unmapped, oo_list *issues, const char *what)
{
    const char *text = json_object_to_json_string_ext(src, JSON_C_TO_STRING_PLAIN);
    char *buf = strdup(text);
    fj_doc doc;
    fj_error err;
    cr_assert(fj_parse(buf, strlen(buf), NULL, &doc, &err), "%s: %s", what, err.message);
    mpe_options o = {.skip_unmapped = !want_unmapped};
    json_object *out = NULL;
    bool ok = mps_run(set, m, &doc, UINT32_MAX, &o, &out, issues);
    if (!ok)
        print_issues(issues);
    cr_assert(ok, "%s: the map failed", what);
    fj_doc_free(&doc);
    free(buf);
    return out;
}

static void expect_valid(json_object *res, const char *what)
{
    oo_list v;
    oo_list_init(&v, 0);
    size_t errors = mps_validate(set, res, &v);
    if (errors)
        print_issues(&v);
    cr_expect_eq(errors, 0, "%s: the result is invalid: %s", what,
                 json_object_to_json_string_ext(res, JSON_C_TO_STRING_PLAIN));
    oo_list_free(&v);
}

typedef struct outcome {
    size_t sources, resources, kinds[P_COUNT];
    char *all_output; /* every insurer record, concatenated */
    size_t out_len;
} outcome;

/* Map every fixture source there and back, checking validity and both round trips. */
static void map_everything(outcome *o)
{
    fixtures *f = calloc(1, sizeof *f);
    source *src = calloc(200, sizeof *src);
    load_fixtures(f);
    size_t n = build_sources(f, src, 200);
    *o = (outcome){.sources = n};
    /* every fixture is in a source; a patient only where a stay or plan of theirs is (patient-11 has none,
     * patient-12 comes with her stay inside its transaction Bundle) */
    size_t patients = 0;
    for (size_t i = 0; i < f->count; i++) {
        bool patient = !strcmp(jstr(f->items[i].res, "resourceType"), "Patient");
        cr_expect(f->items[i].used || patient, "%s is in no source the maps take", f->items[i].path);
        o->resources += f->items[i].used;
        patients += patient && f->items[i].used;
    }
    cr_expect_geq(patients, 10, "%zu patients", patients);
    for (size_t i = 0; i < n; i++) {
        pair *p = &pairs[src[i].pair];
        o->kinds[src[i].pair]++;
        oo_list issues;
        oo_list_init(&issues, 0);
        json_object *rec = run_on(p->m_to, src[i].doc, true, &issues, src[i].name);
        expect_valid(rec, src[i].name);
        /* FHIR -> insurer -> FHIR: the source less its unmapped elements is in what comes back */
        json_object *back = run_on(p->m_back, rec, false, &issues, src[i].name);
        expect_valid(back, src[i].name);
        json_object *mapped = mapped_part(src[i].doc, &issues);
        json_object *whole = back;
        cr_expect(contained(mapped, whole), "%s: not every mapped element came back\nmapped %s\nback   %s", src[i].name,
                  json_object_to_json_string_ext(mapped, JSON_C_TO_STRING_PLAIN),
                  json_object_to_json_string_ext(whole, JSON_C_TO_STRING_PLAIN));
        /* insurer -> FHIR -> insurer */
        json_object *again = run_on(p->m_to, back, false, &issues, src[i].name);
        cr_expect(tj_same(rec, again), "%s: the record changed on the way back\nfirst  %s\nagain  %s", src[i].name,
                  json_object_to_json_string_ext(rec, JSON_C_TO_STRING_PLAIN),
                  json_object_to_json_string_ext(again, JSON_C_TO_STRING_PLAIN));
        const char *t = json_object_to_json_string_ext(rec, JSON_C_TO_STRING_PLAIN);
        size_t tl = strlen(t);
        o->all_output = realloc(o->all_output, o->out_len + tl + 2);
        memcpy(o->all_output + o->out_len, t, tl);
        o->out_len += tl;
        o->all_output[o->out_len++] = '\n';
        o->all_output[o->out_len] = 0;
        json_object_put(rec);
        json_object_put(back);
        json_object_put(mapped);
        json_object_put(again);
        json_object_put(src[i].doc);
        oo_list_free(&issues);
    }
    free_fixtures(f);
    free(f);
    free(src);
}

Test(map, every_fixture_there_and_back)
{
    outcome o;
    map_everything(&o);
    cr_expect_geq(o.resources, 40, "%zu resources", o.resources);
    for (int k = 0; k < P_COUNT; k++)
        cr_expect_gt(o.kinds[k], 0, "no source for %s", pairs[k].to);
    /* all kinds of care and all four GZSP forms reached the insurer */
    const char *products[] = {"PR-ELV-LC",
                              "PR-ELV-HC",
                              "PR-ELV-PT",
                              "PR-ELV-TR",
                              "PR-GRZ-CVA",
                              "PR-GRZ-ORT",
                              "PR-GRZ-OVR",
                              "\"gzspForm\":\"PR-GZSP-KWP\"",
                              "\"gzspForm\":\"PR-GZSP-NAH\"",
                              "\"gzspForm\":\"PR-GZSP-HUN\"",
                              "\"gzspForm\":\"PR-GZSP-SGL\""};
    for (size_t i = 0; i < sizeof products / sizeof *products; i++)
        cr_expect_not_null(strstr(o.all_output, products[i]), "%s never reached the insurer", products[i]);
    free(o.all_output);
}

/* Every string at key (recursively) in o. */
static void strings_at(json_object *o, const char *key, bool under, char ***out, size_t *n)
{
    if (json_object_is_type(o, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(o); i++)
            strings_at(json_object_array_get_idx(o, i), key, under, out, n);
    } else if (json_object_is_type(o, json_type_object)) {
        json_object_object_foreach(o, k, v)
        {
            bool here = under || !strcmp(k, key);
            strings_at(v, key, here, out, n);
        }
    } else if (under && json_object_is_type(o, json_type_string)) {
        *out = realloc(*out, (*n + 1) * sizeof **out);
        (*out)[(*n)++] = strdup(json_object_get_string(o));
    }
}

Test(map, no_bsn_name_address_or_birth_date_reaches_the_insurer)
{
    outcome o;
    map_everything(&o);
    fixtures *f = calloc(1, sizeof *f);
    load_fixtures(f);
    char **pii = NULL;
    size_t n = 0, patients = 0;
    for (size_t i = 0; i < f->count; i++) {
        json_object *r = f->items[i].res;
        if (strcmp(jstr(r, "resourceType"), "Patient"))
            continue;
        patients++;
        strings_at(json_object_object_get(r, "identifier"), "value", false, &pii, &n);
        strings_at(json_object_object_get(r, "name"), "family", false, &pii, &n);
        strings_at(json_object_object_get(r, "name"), "given", false, &pii, &n);
        strings_at(json_object_object_get(r, "address"), "address", true, &pii, &n);
        strings_at(r, "birthDate", false, &pii, &n);
    }
    cr_expect_eq(patients, 12);
    cr_expect_geq(n, 12 * 4, "%zu personal values", n);
    for (size_t i = 0; i < n; i++) {
        cr_expect_null(strstr(o.all_output, pii[i]), "'%s' reached the insurer", pii[i]);
        free(pii[i]);
    }
    free(pii);
    free_fixtures(f);
    free(f);
    free(o.all_output);
}

/* ---- pseudonyms --------------------------------------------------------------- */

Test(map, pseudonym_is_hmac_sha256_of_the_bsn)
{
    char hex[MPN_HEX_LEN + 1];
    cr_assert(mpn_pseudonym(&test_key, "999990081", 9, hex));
    unsigned char mac[32];
    unsigned int len = 0;
    HMAC(EVP_sha256(), test_key.bytes, (int)test_key.len, (const unsigned char *)"999990081", 9, mac, &len);
    char want[65];
    for (int i = 0; i < 32; i++)
        snprintf(want + 2 * i, 3, "%02x", mac[i]);
    cr_expect_str_eq(hex, want);
    cr_expect_not(mpn_pseudonym(&test_key, "999990082", 9, hex), "fails the eleven-test");
    cr_expect_not(mpn_pseudonym(&test_key, "12345678", 8, hex));
    mpn_key other;
    char err[128];
    const char *hex2 = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
    cr_assert(mpn_key_from_hex(hex2, strlen(hex2), &other, err, sizeof err));
    char hex3[MPN_HEX_LEN + 1];
    cr_assert(mpn_pseudonym(&other, "999990081", 9, hex3));
    cr_expect_str_neq(hex, hex3, "another key, another pseudonym");
    cr_expect_not(mpn_key_from_hex("abcd", 4, &other, err, sizeof err), "too short");
    cr_expect_not(mpn_key_from_hex("zz", 2, &other, err, sizeof err));
}

/* ---- ConceptMaps ------------------------------------------------------------ */

Test(map, conceptmaps_are_each_others_inverse)
{
    const char *pairs_cm[][2] = {{"care-kind-to-insurer", "insurer-to-care-kind"},
                                 {"discipline-to-insurer", "insurer-to-discipline"},
                                 {"legal-form-to-insurer", "insurer-to-legal-form"},
                                 {"origin-to-insurer", "insurer-to-origin"},
                                 {"destination-to-insurer", "insurer-to-destination"},
                                 {"exit-criterion-to-insurer", "insurer-to-exit-criterion"}};
    for (size_t i = 0; i < sizeof pairs_cm / sizeof *pairs_cm; i++) {
        char p1[300], p2[300];
        snprintf(p1, sizeof p1, "%s/conceptmaps/ConceptMap-%s.json", MAPS, pairs_cm[i][0]);
        snprintf(p2, sizeof p2, "%s/conceptmaps/ConceptMap-%s.json", MAPS, pairs_cm[i][1]);
        json_object *fwd = load_json(p1), *back = load_json(p2);
        size_t there = 0, found = 0;
        json_object *groups = json_object_object_get(fwd, "group");
        for (size_t g = 0; g < alen(groups); g++) {
            json_object *grp = json_object_array_get_idx(groups, g), *els = json_object_object_get(grp, "element");
            for (size_t e = 0; e < alen(els); e++, there++) {
                json_object *el = json_object_array_get_idx(els, e);
                const char *code = jstr(el, "code");
                const char *to = jstr(json_object_array_get_idx(json_object_object_get(el, "target"), 0), "code");
                json_object *bg = json_object_object_get(back, "group");
                for (size_t h = 0; h < alen(bg); h++) {
                    json_object *bgrp = json_object_array_get_idx(bg, h);
                    const char *bt = jstr(bgrp, "target"), *fs = jstr(grp, "source");
                    if ((bt || fs) && (!bt || !fs || strcmp(bt, fs)))
                        continue;
                    json_object *bels = json_object_object_get(bgrp, "element");
                    for (size_t k = 0; k < alen(bels); k++) {
                        json_object *bel = json_object_array_get_idx(bels, k);
                        const char *bto = jstr(json_object_array_get_idx(json_object_object_get(bel, "target"), 0),
                                               "code");
                        found += !strcmp(jstr(bel, "code"), to) && !strcmp(bto, code);
                    }
                }
            }
        }
        cr_expect_eq(found, there, "%s: %zu of %zu codes come back", pairs_cm[i][0], found, there);
        cr_expect_gt(there, 0);
        json_object_put(fwd);
        json_object_put(back);
    }
}

/* ---- bad input ---------------------------------------------------------------- */

/* Loading text as map `name` fails with all of the words in one error. */
static void load_fails(const char *name, const char *text, const char *w1, const char *w2)
{
    oo_list issues;
    oo_list_init(&issues, 0);
    cr_expect_null(mps_add_map(set, text, strlen(text), name, &issues));
    bool found = false;
    for (size_t i = 0; i < issues.count; i++)
        found |= strstr(issues.items[i].message, w1) && (!w2 || strstr(issues.items[i].message, w2));
    if (!found)
        print_issues(&issues);
    cr_expect(found, "no error says '%s' and '%s'", w1, w2 ? w2 : "");
    oo_list_free(&issues);
}

Test(map, a_map_that_does_not_parse_names_file_and_line)
{
    load_fails("broken.map",
               "map \"u\" = \"n\"\n"
               "group main(source src : Encounter, target tgt : InsurerStay) {\n"
               "  src.period as p -> tgt.admission = p.start\n"
               "}\n",
               "broken.map:4:1:", "expected ';'");
}

Test(map, a_fhirpath_error_names_file_and_line)
{
    load_fails("bad-path.map",
               "map \"u\" = \"n\"\n"
               "group main(source src : Encounter, target tgt : InsurerStay) {\n"
               "  src.period as p where (start.frobnicate()) -> tgt.admission = p \"admission\";\n"
               "}\n",
               "bad-path.map:3:", "frobnicate");
}

/* Run a map over a source text: it must fail with words in an error, at `where` (when given), with no result. */
static void run_fails(const sm_map *m, const char *text, const char *w1, const char *w2, const char *where)
{
    char *buf = strdup(text);
    fj_doc doc;
    fj_error err;
    cr_assert(fj_parse(buf, strlen(buf), NULL, &doc, &err), "%s", err.message);
    oo_list issues;
    oo_list_init(&issues, 0);
    json_object *out = (json_object *)1;
    cr_expect_not(mps_run(set, m, &doc, UINT32_MAX, NULL, &out, &issues));
    cr_expect_null(out, "a failed mapping gave a (partial) record");
    bool found = false;
    for (size_t i = 0; i < issues.count; i++) {
        const oo_issue *is = &issues.items[i];
        found |= is->severity <= OO_ERROR && strstr(is->message, w1) && (!w2 || strstr(is->message, w2)) &&
                 (!where || (is->expression && !strcmp(is->expression, where)));
    }
    if (!found)
        print_issues(&issues);
    cr_expect(found, "no error says '%s' and '%s' at %s", w1, w2 ? w2 : "", where ? where : "(any)");
    oo_list_free(&issues);
    fj_doc_free(&doc);
    free(buf);
}

static const char *STAY_BUNDLE =
    "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":["
    "{\"fullUrl\":\"https://fhirgw.nl/fhir/Encounter/s\",\"resource\":{\"resourceType\":\"Encounter\",\"id\":\"s\","
    "\"status\":\"finished\",\"class\":{\"code\":\"IMP\"},\"type\":[{\"coding\":[{\"system\":"
    "\"https://fhirgw.nl/fhir/CodeSystem/care-kind\",\"code\":\"elv-laagcomplex\"}]}],"
    "\"subject\":{\"reference\":\"Patient/p\"},\"period\":{\"start\":\"2026-01-01\"},"
    "\"hospitalization\":{\"admitSource\":{\"coding\":[{\"system\":\"http://terminology.hl7.org/CodeSystem/"
    "admit-source\",\"code\":\"%s\"}]}},\"serviceProvider\":{\"reference\":\"Organization/ura-90000301\"}}},"
    "{\"fullUrl\":\"https://fhirgw.nl/fhir/Patient/p\",\"resource\":{\"resourceType\":\"Patient\",\"id\":\"p\","
    "\"identifier\":[{\"system\":\"http://fhir.nl/fhir/NamingSystem/bsn\",\"value\":\"%s\"}]}}]}";

static char *stay_with(const char *origin, const char *bsn)
{
    size_t n = strlen(STAY_BUNDLE) + 64;
    char *s = malloc(n);
    snprintf(s, n, STAY_BUNDLE, origin, bsn);
    return s;
}

Test(map, a_code_with_no_mapping_names_the_code_and_element)
{
    char *s = stay_with("teleport", "999990081");
    run_fails(pairs[P_STAY].m_to, s, "no mapping for code 'teleport'", "encounter-to-stay.map",
              "Bundle.entry[0].resource.hospitalization.admitSource.coding[0].code");
    free(s);
}

Test(map, a_source_that_does_not_fit_the_map)
{
    run_fails(pairs[P_STAY].m_to, "{\"resourceType\":\"Contract\",\"status\":\"executed\"}", "the source is a Contract",
              "takes a Encounter", NULL);
    /* a stay whose patient cannot be resolved: no BSN, no pseudonym, no record */
    run_fails(pairs[P_STAY].m_to,
              "{\"resourceType\":\"Encounter\",\"status\":\"finished\",\"class\":{\"code\":\"IMP\"},"
              "\"subject\":{\"reference\":\"Patient/elsewhere\"}}",
              "check failed", "encounter-to-stay.map", "Encounter.subject");
    /* a BSN that fails the eleven-test is refused without being quoted */
    char *s = stay_with("gp", "123456789");
    run_fails(pairs[P_STAY].m_to, s, "is not a BSN", NULL, NULL);
    free(s);
}

Test(map, a_good_stay_maps)
{
    char *s = stay_with("gp", "999990081");
    fj_doc doc;
    fj_error err;
    cr_assert(fj_parse(s, strlen(s), NULL, &doc, &err));
    oo_list issues;
    oo_list_init(&issues, 0);
    json_object *out = NULL;
    cr_assert(mps_run(set, pairs[P_STAY].m_to, &doc, UINT32_MAX, NULL, &out, &issues));
    char hex[MPN_HEX_LEN + 1];
    mpn_pseudonym(&test_key, "999990081", 9, hex);
    cr_expect_str_eq(jstr(out, "patientPseudonym"), hex);
    cr_expect_str_eq(jstr(out, "origin"), "04");
    cr_expect_str_eq(jstr(out, "careKind"), "PR-ELV");
    cr_expect_str_eq(jstr(out, "variant"), "PR-ELV-LC");
    cr_expect_null(strstr(json_object_to_json_string(out), "999990081"));
    json_object_put(out);
    oo_list_free(&issues);
    fj_doc_free(&doc);
    free(s);
}
