/*
 * gateway/rest/rest_compliance_pull.c — pull mode (see rest_compliance_pull.h).
 */
#include "gateway/rest/rest_compliance_pull.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENDPOINT_CONNECTION_TYPES "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"

typedef struct remote {
    const ob_client *client;
    char base[CFG_PATH_MAX];
    char ura[16];
} remote;

/* ---- finding the provider's endpoint --------------------------------------------------- */

static bool string_is(json_object *o, const char *key, const char *want)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string) &&
           !strcmp(json_object_get_string(v), want);
}

/* An active hl7-fhir-rest Endpoint with an https address: its address (no trailing slash) into base. */
static bool usable_endpoint(json_object *ep, char *base, size_t size)
{
    json_object *ct, *addr;
    if (!string_is(ep, "status", "active") || !json_object_object_get_ex(ep, "connectionType", &ct) ||
        !string_is(ct, "code", "hl7-fhir-rest") || !string_is(ct, "system", ENDPOINT_CONNECTION_TYPES) ||
        !json_object_object_get_ex(ep, "address", &addr) || !json_object_is_type(addr, json_type_string))
        return false;
    const char *a = json_object_get_string(addr);
    size_t n = strlen(a);
    while (n && a[n - 1] == '/')
        n--;
    if (strncmp(a, "https://", 8) != 0 || n >= size)
        return false;
    memcpy(base, a, n);
    base[n] = '\0';
    return true;
}

static json_object *read_json(st_store *store, const char *type, const char *id)
{
    st_resource r;
    st_error err;
    if (st_read(store, type, id, &r, &err) != ST_OK)
        return NULL;
    json_object *o = r.deleted ? NULL : json_tokener_parse(r.json);
    st_resource_free(&r);
    return o;
}

/* The FHIR base of the provider's first usable endpoint; 0, 404 (no such provider) or 422 (no endpoint). */
static int find_endpoint(rest_app *app, const char *ura, char *base, size_t size, char *msg, size_t msglen)
{
    char id[32];
    snprintf(id, sizeof id, "ura-%.8s", ura);
    json_object *org = read_json(app->opt.store, "Organization", id);
    if (!org) {
        snprintf(msg, msglen, "provider %.8s is not known here (no Organization/%s)", ura, id);
        return 404;
    }
    json_object *eps;
    bool found = false;
    if (json_object_object_get_ex(org, "endpoint", &eps) && json_object_is_type(eps, json_type_array))
        for (size_t i = 0; !found && i < json_object_array_length(eps); i++) {
            json_object *ref;
            if (!json_object_object_get_ex(json_object_array_get_idx(eps, i), "reference", &ref) ||
                strncmp(json_object_get_string(ref), "Endpoint/", 9) != 0)
                continue;
            json_object *ep = read_json(app->opt.store, "Endpoint", json_object_get_string(ref) + 9);
            found = ep && usable_endpoint(ep, base, size);
            json_object_put(ep);
        }
    json_object_put(org);
    if (!found) {
        snprintf(msg, msglen,
                 "provider %.8s has no FHIR endpoint registered: Organization/%s.endpoint must name an active Endpoint "
                 "with connectionType hl7-fhir-rest and an https address",
                 ura, id);
        return 422;
    }
    return 0;
}

/* ---- the provider's endpoint as a source ---------------------------------------------- */

static const char *const ACCEPT[] = {"Accept: application/fhir+json", NULL};

/* The status and message of a failed call; 404 when the provider does not have it. */
static int call_failed(const remote *r, const ob_error *err, const char *what, char *msg, size_t msglen)
{
    if (err->kind == OB_HTTP_STATUS && (err->status == 404 || err->status == 410))
        return 404;
    snprintf(msg, msglen, "pulling %s from provider %s failed (%s): %s", what, r->ura, ob_error_kind_name(err->kind),
             err->message);
    return err->kind == OB_TIMEOUT ? 504 : 502;
}

/*
 * Is the answer a valid resource of `type` (and id, unless NULL)? The project's validator over a copy (it
 * decodes in place); false with msg saying what is wrong.
 */
static bool valid_answer(const remote *r, const ob_response *resp, const char *what, const char *type, const char *id,
                         char *msg, size_t msglen)
{
    json_object *o = resp->body ? json_tokener_parse(resp->body) : NULL;
    bool ok = o != NULL;
    if (!ok)
        snprintf(msg, msglen, "provider %s answered %s with something that is not JSON", r->ura, what);
    if (ok && (!string_is(o, "resourceType", type) || (id && !string_is(o, "id", id)))) {
        snprintf(msg, msglen, "provider %s answered %s with another resource than %s%s%s", r->ura, what, type,
                 id ? "/" : "", id ? id : "");
        ok = false;
    }
    json_object_put(o);
    if (!ok)
        return false;
    char *copy = strndup(resp->body, resp->len);
    oo_list issues;
    oo_list_init(&issues, 0);
    size_t errors = copy ? fv_validate_buffer(copy, resp->len, NULL, &issues) : 1;
    if (errors) {
        const oo_issue *first = NULL;
        for (size_t i = 0; i < issues.count && !first; i++)
            if (issues.items[i].severity <= OO_ERROR)
                first = &issues.items[i];
        snprintf(msg, msglen, "provider %s sent invalid FHIR for %s (%zu errors), first: %s: %s", r->ura, what, errors,
                 first && first->expression ? first->expression : type, first ? first->message : "out of memory");
    }
    oo_list_free(&issues);
    free(copy);
    return errors == 0;
}

static int remote_read(void *self, const char *type, const char *id, char **json, size_t *len, char *msg, size_t msglen)
{
    remote *r = self;
    char url[CFG_PATH_MAX + 2 * ST_ID_MAX + 8], what[2 * ST_ID_MAX + 8];
    snprintf(url, sizeof url, "%s/%s/%s", r->base, type, id);
    snprintf(what, sizeof what, "%s/%s", type, id);
    ob_response resp;
    ob_error err;
    int status = 0;
    if (!ob_get(r->client, url, ACCEPT, &resp, &err))
        status = call_failed(r, &err, what, msg, msglen);
    else if (!valid_answer(r, &resp, what, type, id, msg, msglen))
        status = 502;
    if (status == 0) {
        *json = resp.body;
        *len = resp.len;
        resp.body = NULL;
    }
    ob_response_free(&resp);
    return status;
}

/* Characters of a reference that a query value may carry as they are ("Patient/p-1.a"). */
static bool plain_reference(const char *ref)
{
    return strspn(ref, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-./") == strlen(ref);
}

static int remote_search(void *self, const char *type, const char *param, const char *ref, cx_add_fn add, void *arg,
                         char *msg, size_t msglen)
{
    remote *r = self;
    if (!plain_reference(ref))
        return 0; /* ids are [A-Za-z0-9.-]: anything else was never a reference we follow */
    char url[CFG_PATH_MAX + 2 * ST_ID_MAX + 96], what[2 * ST_ID_MAX + 96];
    snprintf(url, sizeof url, "%s/%s?%s=%s", r->base, type, param, ref);
    snprintf(what, sizeof what, "the search %s?%s=%s", type, param, ref);
    ob_response resp;
    ob_error err;
    int status = 0;
    if (!ob_get(r->client, url, ACCEPT, &resp, &err)) {
        /* a search the provider does not offer leaves this context out (the rules then say needs-review) */
        bool unsupported = err.kind == OB_HTTP_STATUS && err.status >= 400 && err.status < 500;
        status = unsupported ? 0 : call_failed(r, &err, what, msg, msglen);
        if (status == 404)
            status = 0;
    } else if (!valid_answer(r, &resp, what, "Bundle", NULL, msg, msglen)) {
        status = 502;
    } else {
        json_object *b = json_tokener_parse(resp.body), *entries;
        if (json_object_object_get_ex(b, "entry", &entries) && json_object_is_type(entries, json_type_array))
            for (size_t i = 0; i < json_object_array_length(entries); i++) {
                json_object *res;
                if (!json_object_object_get_ex(json_object_array_get_idx(entries, i), "resource", &res) ||
                    !string_is(res, "resourceType", type))
                    continue; /* included resources are not matches */
                const char *text = json_object_to_json_string_ext(res, JSON_C_TO_STRING_PLAIN);
                add(arg, text, strlen(text));
            }
        json_object_put(b);
    }
    ob_response_free(&resp);
    return status;
}

int rest_pull_gather(rest_app *app, const char *ura, const char *type, const char *id, cx_set *set, char *msg,
                     size_t msglen)
{
    memset(set, 0, sizeof *set);
    if (!app->opt.outbound) {
        snprintf(msg, msglen, "pull mode is not configured on this gateway (no outbound client)");
        return 503;
    }
    remote r = {.client = app->opt.outbound};
    snprintf(r.ura, sizeof r.ura, "%.8s", ura);
    int s = find_endpoint(app, ura, r.base, sizeof r.base, msg, msglen);
    if (s != 0)
        return s;
    cx_source src = {.read = remote_read, .search = remote_search, .self = &r}; /* one at a time */
    s = cx_gather(&src, type, id, set, msg, msglen);
    if (s == 404 && !msg[0])
        snprintf(msg, msglen, "provider %s does not have %s/%s", r.ura, type, id);
    return s;
}
