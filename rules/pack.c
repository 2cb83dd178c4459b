/*
 * rules/pack.c — loading a rule pack from its JSON (rules/pack.h), with
 * json-c: a pack is read once at start, so building beats a fast reader.
 * The pack owns copies of every string.
 */
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "rules/internal.h"

static const char *str(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string) ? json_object_get_string(v)
                                                                                             : NULL;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static bool load_demands(json_object *arr, const char *list_key, rl_demands **out, size_t *count)
{
    size_t n = arr && json_object_is_type(arr, json_type_array) ? json_object_array_length(arr) : 0;
    *count = 0;
    *out = n ? calloc(n, sizeof **out) : NULL;
    for (size_t i = 0; i < n; i++) {
        json_object *g = json_object_array_get_idx(arr, i), *items;
        if (!str(g, "when") || !json_object_object_get_ex(g, list_key, &items) ||
            !json_object_is_type(items, json_type_array))
            return false;
        rl_demands *d = &(*out)[(*count)++];
        d->when = strdup(str(g, "when"));
        d->count = json_object_array_length(items);
        d->items = calloc(d->count ? d->count : 1, sizeof *d->items);
        for (size_t k = 0; k < d->count; k++)
            d->items[k] = strdup(json_object_get_string(json_object_array_get_idx(items, k)));
    }
    return true;
}

/* One rule; false (issue added) when something required is missing or unknown. */
static bool load_rule(json_object *o, rl_rule *r, const char *origin, oo_list *issues)
{
    r->id = dup_or_null(str(o, "id"));
    r->subject = dup_or_null(str(o, "subject"));
    r->source = dup_or_null(str(o, "source"));
    r->sentence = dup_or_null(str(o, "sentence"));
    const char *sev = str(o, "severity");
    json_object *msg = NULL, *inv = NULL, *checks = NULL;
    json_object_object_get_ex(o, "message", &msg);
    r->message_nl = dup_or_null(str(msg, "nl"));
    r->message_en = dup_or_null(str(msg, "en"));
    if (!r->id || !r->subject || !r->source || !r->sentence || !sev || !r->message_nl || !r->message_en ||
        (strcmp(sev, "error") && strcmp(sev, "warning"))) {
        oo_add(issues, OO_ERROR, OO_STRUCTURE, NULL, 0, 0,
               "%s: rule %s needs id, subject, severity (error|warning), source, sentence and message nl/en", origin,
               r->id ? r->id : "?");
        return false;
    }
    r->error = !strcmp(sev, "error");
    if (json_object_object_get_ex(o, "invariant", &inv)) {
        r->invariant_profile = dup_or_null(str(inv, "profile"));
        r->invariant_key = dup_or_null(str(inv, "key"));
        r->invariant_on = dup_or_null(str(inv, "on"));
        if (!r->invariant_profile || !r->invariant_key) {
            oo_add(issues, OO_ERROR, OO_STRUCTURE, NULL, 0, 0, "%s: rule %s: an invariant names profile and key",
                   origin, r->id);
            return false;
        }
    }
    json_object_object_get_ex(o, "checks", &checks);
    size_t n = checks && json_object_is_type(checks, json_type_array) ? json_object_array_length(checks) : 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = json_object_get_string(json_object_array_get_idx(checks, i));
        const rl_check_def *c = name ? rl_check_find(name) : NULL;
        if (!c || r->check_count == sizeof r->checks / sizeof *r->checks) {
            oo_add(issues, OO_ERROR, OO_NOT_FOUND, NULL, 0, 0, "%s: rule %s: no named check '%s'", origin, r->id,
                   name ? name : "?");
            return false;
        }
        r->checks[r->check_count++] = c;
    }
    if (!r->invariant_profile && !r->check_count) {
        oo_add(issues, OO_ERROR, OO_STRUCTURE, NULL, 0, 0, "%s: rule %s is neither an invariant nor a named check",
               origin, r->id);
        return false;
    }
    json_object *a = NULL, *nw = NULL;
    json_object_object_get_ex(o, "attest", &a);
    json_object_object_get_ex(o, "networks", &nw);
    if (!load_demands(a, "require", &r->attest, &r->attest_count) ||
        !load_demands(nw, "anyOf", &r->networks, &r->network_count)) {
        oo_add(issues, OO_ERROR, OO_STRUCTURE, NULL, 0, 0, "%s: rule %s: attest/networks need when and a list", origin,
               r->id);
        return false;
    }
    return true;
}

rl_pack *rl_pack_load(const char *json, size_t len, const char *origin, oo_list *issues)
{
    json_tokener *tok = json_tokener_new();
    json_object *root = tok ? json_tokener_parse_ex(tok, json, (int)len) : NULL;
    if (tok)
        json_tokener_free(tok);
    json_object *rules = NULL, *year = NULL;
    if (!root || !str(root, "pack") || !json_object_object_get_ex(root, "rules", &rules) ||
        !json_object_is_type(rules, json_type_array) || !json_object_object_get_ex(root, "contractYear", &year)) {
        oo_add(issues, OO_ERROR, OO_STRUCTURE, NULL, 0, 0, "%s: not a rule pack (pack, contractYear, rules)", origin);
        json_object_put(root);
        return NULL;
    }
    rl_pack *p = calloc(1, sizeof *p);
    p->version = strdup(str(root, "pack"));
    p->contract_year = json_object_get_int(year);
    size_t n = json_object_array_length(rules);
    p->rules = calloc(n ? n : 1, sizeof *p->rules);
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        ok = load_rule(json_object_array_get_idx(rules, i), &p->rules[p->count++], origin, issues);
        if (ok && rl_pack_find(p, p->rules[p->count - 1].id) != &p->rules[p->count - 1]) {
            oo_add(issues, OO_ERROR, OO_STRUCTURE, NULL, 0, 0, "%s: rule %s twice", origin, p->rules[p->count - 1].id);
            ok = false;
        }
    }
    json_object_put(root);
    if (!ok) {
        rl_pack_free(p);
        return NULL;
    }
    return p;
}

static void free_demands(rl_demands *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(d[i].when);
        for (size_t k = 0; k < d[i].count; k++)
            free(d[i].items[k]);
        free(d[i].items);
    }
    free(d);
}

void rl_pack_free(rl_pack *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->count; i++) {
        rl_rule *r = &p->rules[i];
        free(r->id);
        free(r->subject);
        free(r->source);
        free(r->sentence);
        free(r->message_nl);
        free(r->message_en);
        free(r->invariant_profile);
        free(r->invariant_key);
        free(r->invariant_on);
        free_demands(r->attest, r->attest_count);
        free_demands(r->networks, r->network_count);
    }
    free(p->rules);
    free(p->version);
    free(p);
}

const rl_rule *rl_pack_find(const rl_pack *p, const char *id)
{
    for (size_t i = 0; i < p->count; i++)
        if (p->rules[i].id && !strcmp(p->rules[i].id, id))
            return &p->rules[i];
    return NULL;
}
