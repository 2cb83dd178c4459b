/*
 * gateway/rest/rest_compliance_context.c — gathering a check's context (see rest_compliance_context.h).
 */
#include "gateway/rest/rest_compliance_context.h"

#include "gateway/rest/answer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The searches per subject type: resources of `type` whose `param` names what the subject's element
 * `via` refers to ("" = the subject itself). */
typedef struct cx_search {
    const char *subject, *type, *param, *via;
} cx_search;

static const cx_search SEARCHES[] = {
    {"CarePlan", "Coverage", "beneficiary", "subject"},
    {"CarePlan", "Encounter", "subject", "subject"},
    {"Encounter", "Task", "encounter", ""},
    {"Encounter", "Contract", "subject", "serviceProvider"},
    {"Encounter", "Coverage", "beneficiary", "subject"},
    {"Organization", "Contract", "subject", ""},
    {"Organization", "Encounter", "service-provider", ""},
};

/* The types whose references are followed: what a rule may look at. */
static const char *const FOLLOWED[] = {"Patient",  "Organization", "CareTeam",    "PractitionerRole",
                                       "Goal",     "Location",     "Task",        "Encounter",
                                       "Coverage", "Contract",     "Practitioner"};

/* Rounds of following references: the subject's, then those of what they brought. */
#define CX_ROUNDS 2

static bool followed(const char *type, size_t len)
{
    for (size_t i = 0; i < sizeof FOLLOWED / sizeof *FOLLOWED; i++)
        if (strlen(FOLLOWED[i]) == len && !memcmp(FOLLOWED[i], type, len))
            return true;
    return false;
}

/* ---- the set ------------------------------------------------------------------------- */

void cx_set_free(cx_set *set)
{
    for (size_t i = 0; i < set->count; i++)
        free(set->json[i]);
    free(set->json);
    free(set->len);
    free(set->key);
    memset(set, 0, sizeof *set);
}

static bool has(const cx_set *set, const char *key)
{
    for (size_t i = 0; i < set->count; i++)
        if (!strcmp(set->key[i], key))
            return true;
    return false;
}

/* Add a resource's text (copied) under its resourceType/id; false when it is no resource or already there. */
static bool add_text(cx_set *set, const char *json, size_t len)
{
    json_object *o = json_tokener_parse(json);
    json_object *rt, *id;
    char key[sizeof *set->key];
    bool ok = o && json_object_object_get_ex(o, "resourceType", &rt) && json_object_object_get_ex(o, "id", &id) &&
              json_object_is_type(rt, json_type_string) && json_object_is_type(id, json_type_string) &&
              snprintf(key, sizeof key, "%s/%s", json_object_get_string(rt), json_object_get_string(id)) <
                  (int)sizeof key;
    json_object_put(o);
    if (!ok || has(set, key))
        return false;
    if (set->count >= (size_t)LIM(compliance_context_max)) {
        set->truncated = true;
        return false;
    }
    if (set->count == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 16;
        char **j = realloc(set->json, cap * sizeof *j);
        if (j)
            set->json = j;
        size_t *l = realloc(set->len, cap * sizeof *l);
        if (l)
            set->len = l;
        char(*k)[sizeof *set->key] = realloc(set->key, cap * sizeof *k);
        if (k)
            set->key = k;
        if (!j || !l || !k)
            return false;
        set->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return false;
    memcpy(copy, json, len);
    copy[len] = '\0';
    set->json[set->count] = copy;
    set->len[set->count] = len;
    memcpy(set->key[set->count], key, sizeof key);
    set->count++;
    return true;
}

static void add_found(void *arg, const char *json, size_t len)
{
    add_text(arg, json, len);
}

/* ---- gathering ----------------------------------------------------------------------- */

typedef struct walk {
    const cx_source *src;
    cx_set *set;
    int status;
    char *msg;
    size_t msglen;
} walk;

/* Read type/id into the set unless it is there; false when the source failed. */
static bool fetch(walk *w, const char *type, size_t tlen, const char *id, size_t idlen)
{
    char t[64], i[ST_ID_MAX + 1], key[sizeof *w->set->key];
    if (tlen >= sizeof t || idlen >= sizeof i || !idlen)
        return true;
    memcpy(t, type, tlen);
    t[tlen] = '\0';
    memcpy(i, id, idlen);
    i[idlen] = '\0';
    snprintf(key, sizeof key, "%s/%s", t, i);
    if (has(w->set, key))
        return true;
    char *json = NULL;
    size_t len = 0;
    int s = w->src->read(w->src->self, t, i, &json, &len, w->msg, w->msglen);
    if (s == 0)
        add_text(w->set, json, len);
    free(json);
    if (s != 0 && s != 404) {
        w->status = s;
        return false;
    }
    return true;
}

/* A relative reference "Type/id" (no URL, no fragment, no history) of a followed type: its parts. */
static bool relative(const char *ref, const char **type, size_t *tlen, const char **id, size_t *idlen)
{
    const char *slash = strchr(ref, '/');
    if (!slash || strchr(slash + 1, '/') || strchr(ref, ':') || ref[0] == '#')
        return false;
    *type = ref;
    *tlen = (size_t)(slash - ref);
    *id = slash + 1;
    *idlen = strlen(slash + 1);
    return followed(*type, *tlen);
}

/* Every "reference" string under o; fetch the followed ones. False when the source failed. */
static bool follow(walk *w, json_object *o)
{
    if (json_object_is_type(o, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(o); i++)
            if (!follow(w, json_object_array_get_idx(o, i)))
                return false;
        return true;
    }
    if (!json_object_is_type(o, json_type_object))
        return true;
    json_object_object_foreach(o, k, v)
    {
        const char *type, *id;
        size_t tlen, idlen;
        if (!strcmp(k, "reference") && json_object_is_type(v, json_type_string) &&
            relative(json_object_get_string(v), &type, &tlen, &id, &idlen)) {
            if (!fetch(w, type, tlen, id, idlen))
                return false;
        } else if (!follow(w, v)) {
            return false;
        }
    }
    return true;
}

/* The reference the subject's element `via` holds ("" = the subject itself) into out; false when none. */
static bool reference_via(json_object *subject, const char *key, const char *via, char *out, size_t size)
{
    if (!via[0])
        return snprintf(out, size, "%s", key) < (int)size;
    json_object *el, *ref;
    if (!json_object_object_get_ex(subject, via, &el) || !json_object_object_get_ex(el, "reference", &ref) ||
        !json_object_is_type(ref, json_type_string))
        return false;
    const char *type, *id;
    size_t tlen, idlen;
    const char *text = json_object_get_string(ref);
    return relative(text, &type, &tlen, &id, &idlen) && snprintf(out, size, "%s", text) < (int)size;
}

static bool search_all(walk *w, const char *type, json_object *subject)
{
    for (size_t i = 0; i < sizeof SEARCHES / sizeof *SEARCHES; i++) {
        const cx_search *s = &SEARCHES[i];
        char ref[sizeof *w->set->key];
        if (strcmp(s->subject, type) != 0 || !reference_via(subject, w->set->key[0], s->via, ref, sizeof ref))
            continue;
        int st = w->src->search(w->src->self, s->type, s->param, ref, add_found, w->set, w->msg, w->msglen);
        if (st != 0) {
            w->status = st;
            return false;
        }
    }
    return true;
}

int cx_gather(const cx_source *src, const char *type, const char *id, cx_set *set, char *msg, size_t msglen)
{
    memset(set, 0, sizeof *set);
    msg[0] = '\0';
    char *json = NULL;
    size_t len = 0;
    int s = src->read(src->self, type, id, &json, &len, msg, msglen);
    if (s != 0)
        return s;
    bool added = add_text(set, json, len);
    free(json);
    if (!added) {
        snprintf(msg, msglen, "%s/%s is not a resource with that type and id", type, id);
        return 502;
    }
    walk w = {src, set, 0, msg, msglen};
    json_object *subject = json_tokener_parse(set->json[0]);
    bool ok = subject && search_all(&w, type, subject);
    json_object_put(subject);
    /* each round follows the references of what the previous one brought */
    for (size_t round = 0, from = 0; ok && round < CX_ROUNDS; round++) {
        size_t to = set->count;
        for (size_t i = from; ok && i < to; i++) {
            json_object *o = json_tokener_parse(set->json[i]);
            ok = follow(&w, o);
            json_object_put(o);
        }
        from = to;
    }
    return ok ? 0 : w.status ? w.status : 500;
}

char *cx_bundle(const cx_set *set, size_t *len)
{
    fj_buf out = {0};
    fj_buf_puts(&out, "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[");
    for (size_t i = 0; i < set->count; i++) {
        fj_buf_puts(&out, i ? ",{\"resource\":" : "{\"resource\":");
        fj_buf_append(&out, set->json[i], set->len[i]);
        fj_buf_puts(&out, "}");
    }
    fj_buf_puts(&out, "]}");
    return fj_buf_take(&out, len);
}

/* ---- the store as a source ----------------------------------------------------------- */

static int store_read(void *self, const char *type, const char *id, char **json, size_t *len, char *msg, size_t msglen)
{
    st_resource r;
    st_error err;
    st_status s = st_read(self, type, id, &r, &err);
    if (s == ST_NOT_FOUND || s == ST_GONE || (s == ST_OK && r.deleted)) {
        if (s != ST_NOT_FOUND)
            st_resource_free(&r);
        return 404;
    }
    if (s != ST_OK) {
        snprintf(msg, msglen, "the store failed reading %s/%s: %s", type, id, err.message);
        return rest_status_of(s);
    }
    *json = malloc(r.json_len + 1);
    if (*json) {
        memcpy(*json, r.json, r.json_len + 1);
        *len = r.json_len;
    }
    st_resource_free(&r);
    return *json ? 0 : 503;
}

static int store_search(void *self, const char *type, const char *param, const char *ref, cx_add_fn add, void *arg,
                        char *msg, size_t msglen)
{
    char rtype[64];
    const char *slash = strchr(ref, '/');
    if (!slash || (size_t)(slash - ref) >= sizeof rtype)
        return 0;
    memcpy(rtype, ref, (size_t)(slash - ref));
    rtype[slash - ref] = '\0';
    st_value v = {.prefix = ST_EQ};
    v.v.reference.type = rtype;
    v.v.reference.id = slash + 1;
    st_condition c = {.param = param, .kind = ST_KIND_REFERENCE, .values = &v, .value_count = 1};
    st_query q = {.type = type, .conditions = &c, .condition_count = 1, .count = (size_t)LIM(compliance_context_max)};
    st_list list;
    st_error err;
    st_status s = st_search(self, &q, &list, &err);
    if (s != ST_OK) {
        snprintf(msg, msglen, "the store failed searching %s?%s=%s: %s", type, param, ref, err.message);
        return rest_status_of(s);
    }
    for (size_t i = 0; i < list.count; i++)
        if (!list.items[i].deleted && list.items[i].json)
            add(arg, list.items[i].json, list.items[i].json_len);
    st_list_free(&list);
    return 0;
}

cx_source cx_store_source(st_store *store)
{
    return (cx_source){store_read, store_search, store};
}
