/*
 * gateway/rest/rest_validate.c — the $validate operation (POST
 * /Type/$validate, /Type/id/$validate): the body, or the `resource`
 * parameter of a Parameters body, validated against the schema and a profile
 * (the `profile` parameter or query parameter); answered 200 with the
 * issues found, whatever they are. `mode` create, update and profile validate
 * alike. `mode=delete` on /Type/id/$validate (no resource needed) answers
 * whether a DELETE by the caller would be carried out, with the checks the
 * DELETE itself makes (rest_write.c: access, then rest_access_check_write),
 * and changes nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/rest/answer.h"
#include "gateway/rest/handlers.h"
#include "gateway/rest/rest_access.h"
#include "gateway/rest/rest_write.h"

/* The string value of a Parameters parameter (valueCode, valueString), or NULL; *len set. */
static const char *parameter_text(const fj_doc *d, uint32_t p, size_t *len)
{
    static const char *const keys[] = {"valueCode", "valueString"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        uint32_t v = fj_get(d, p, keys[i]);
        if (v != UINT32_MAX && d->nodes[v].type == FJ_STRING) {
            *len = d->nodes[v].len;
            return fj_str(d, v);
        }
    }
    return NULL;
}

/* The resource to validate: the body, or the `resource` parameter of a Parameters body. */
static uint32_t validate_target(const fj_doc *d, const char **profile, size_t *profile_len, const char **mode,
                                size_t *mode_len)
{
    uint32_t rt = fj_get(d, 0, "resourceType");
    if (rt == UINT32_MAX || !fj_str_eq(d, rt, "Parameters"))
        return 0;
    uint32_t params = fj_get(d, 0, "parameter"), target = UINT32_MAX;
    if (params == UINT32_MAX || d->nodes[params].type != FJ_ARRAY)
        return UINT32_MAX;
    uint32_t p = params + 1;
    for (uint32_t i = 0; i < d->nodes[params].len; i++, p = fj_next(d, p)) {
        uint32_t name = fj_get(d, p, "name");
        if (name != UINT32_MAX && fj_str_eq(d, name, "resource"))
            target = fj_get(d, p, "resource");
        if (name != UINT32_MAX && fj_str_eq(d, name, "mode"))
            *mode = parameter_text(d, p, mode_len);
        if (name != UINT32_MAX && fj_str_eq(d, name, "profile")) {
            uint32_t v = fj_get(d, p, "valueUri");
            if (v == UINT32_MAX)
                v = fj_get(d, p, "valueCanonical");
            if (v != UINT32_MAX && d->nodes[v].type == FJ_STRING) {
                *profile = fj_str(d, v);
                *profile_len = d->nodes[v].len;
            }
        }
    }
    return target;
}

#define CORE_PROFILE_BASE "http://hl7.org/fhir/StructureDefinition/"

/*
 * The profile $validate checks against: one the registry loaded, or a core
 * resource profile, which is the base validation itself (the resource must
 * then be of that type). A "|version" suffix is ignored.
 */
static void choose_profile(rq *q, const char *url, fv_options *opts, oo_list *issues)
{
    opts->profile = opts->profiles ? pf_find(opts->profiles, url) : NULL;
    char shown[RT_ECHO_SIZE]; /* messages quote at most RT_ECHO_MAX bytes of what the client sent */
    rt_echo(url, shown);
    if (opts->profile)
        return;
    size_t base = strlen(CORE_PROFILE_BASE);
    if (!strncmp(url, CORE_PROFILE_BASE, base)) {
        size_t len = strcspn(url + base, "|");
        const fs_type *t = fs_type_by_name(q->app->schema, url + base, len);
        if (t == q->route.type)
            return;
        if (t) {
            oo_add(issues, OO_ERROR, OO_STRUCTURE, NULL, 0, 0, "profile %s is for %s resources, not %s", shown, t->name,
                   q->route.type->name);
            return;
        }
    }
    oo_add(issues, OO_ERROR, OO_NOT_SUPPORTED, NULL, 0, 0, "profile %s is not known", shown);
}

/* create, update and profile validate the resource alike here; delete is answered by validate_delete. False
 * with the 400 answered. */
static bool mode_known(rq *q, const char *mode)
{
    bool ok = !mode || !strcmp(mode, "create") || !strcmp(mode, "update") || !strcmp(mode, "profile") ||
              !strcmp(mode, "delete");
    if (!ok)
        rq_respond_outcome(q, 400, OO_ERROR, OO_INVALID, "mode",
                           "$validate mode must be create, update, delete or profile");
    return ok;
}

/*
 * mode=delete: would `DELETE /Type/id` by this caller be carried out? The resource is looked up and shown or
 * hidden as for a read (audited as a validate of it: 404 when it is not known or not the caller's to see),
 * then the DELETE's own checks are made without deleting: the caller's right to delete it (a refusal is an
 * error issue "forbidden", where the DELETE answers 403) and rest_access_check_write (a registered
 * organisation's directory entry stays: "conflict", where the DELETE answers 409). Answered 200 with the
 * issues, or one informational issue saying that it may be deleted.
 */
static bool validate_delete(rq *q)
{
    const char *type = q->route.type->name;
    if (!q->route.id[0]) {
        rq_respond_outcome(q, 400, OO_ERROR, OO_INVALID, "mode",
                           "$validate mode=delete asks about one resource: POST %s/[id]/$validate", type);
        return false;
    }
    st_resource r;
    st_error err;
    st_status s = st_read(q->app->opt.store, type, q->route.id, &r, &err);
    if (s == ST_NOT_FOUND) {
        rest_record_decision(q, AZ_VALIDATE, type, AZ_HIDDEN, 404, "no such resource", NULL);
        rest_answer_not_known(q, type, q->route.id, NULL);
        return false;
    }
    if (s != ST_OK && s != ST_GONE) {
        rq_respond_outcome(q, rest_status_of(s), OO_ERROR, rest_code_of(s), NULL, "the store failed: %s", err.message);
        return false;
    }
    if (!rest_may(q, &r, AZ_VALIDATE)) { /* answered 404 (hidden) or 403, as a read would be */
        st_resource_free(&r);
        return false;
    }
    oo_list issues;
    oo_list_init(&issues, 0);
    if (az_check_resource(&q->caller, type, AZ_DELETE, r.owner, (const char *const *)r.access_tags,
                          r.access_tag_count) != AZ_ALLOW)
        oo_add(&issues, OO_ERROR, "forbidden", NULL, 0, 0, "this organisation may not delete %s/%s", type, r.id);
    else if (s == ST_GONE)
        oo_add(&issues, OO_INFORMATION, OO_INFORMATIONAL, NULL, 0, 0,
               "%s/%s is already deleted (version %lld): a DELETE would change nothing", type, r.id,
               (long long)r.version);
    else if (!rest_access_check_write(q, &q->write, ST_OP_DELETE, &r, &issues))
        oo_add(&issues, OO_INFORMATION, OO_INFORMATIONAL, NULL, 0, 0,
               "%s/%s (version %lld) may be deleted by this organisation", type, r.id, (long long)r.version);
    rq_respond_issues(q, 200, &issues);
    oo_list_free(&issues);
    st_resource_free(&r);
    return false;
}

bool rest_validate_op(rq *q)
{
    /* the query's mode wins over a Parameters body's; mode=delete in the query needs no body */
    char *mode = sq_query_param(srv_req_query(q->req), "mode");
    size_t sent = 0;
    if (mode && !strcmp(mode, "delete") && (!srv_req_body(q->req, &sent) || !sent)) {
        free(mode);
        return validate_delete(q);
    }
    const unsigned char *body;
    size_t len;
    if (!rest_json_body(q, &body, &len)) {
        free(mode);
        return false;
    }
    oo_list issues;
    oo_list_init(&issues, 0);
    char *copy = malloc(len + 1);
    memcpy(copy, body, len + 1);
    fj_doc doc;
    fj_error err;
    if (!fj_parse(copy, len, NULL, &doc, &err)) {
        oo_add(&issues, OO_FATAL, OO_STRUCTURE, NULL, err.line, err.column, "invalid JSON: %s", err.message);
    } else {
        const char *profile = NULL, *body_mode = NULL;
        size_t profile_len = 0, mode_len = 0;
        uint32_t target = validate_target(&doc, &profile, &profile_len, &body_mode, &mode_len);
        uint32_t rt = target != UINT32_MAX ? fj_get(&doc, target, "resourceType") : UINT32_MAX;
        if (!mode && body_mode)
            mode = strndup(body_mode, mode_len);
        bool known = mode_known(q, mode), deleting = mode && !strcmp(mode, "delete");
        free(mode);
        mode = NULL;
        if (!known || deleting) {
            fj_doc_free(&doc);
            free(copy);
            oo_list_free(&issues);
            return known ? validate_delete(q) : false;
        }
        if (rt == UINT32_MAX || !fj_str_eq(&doc, rt, q->route.type->name)) {
            oo_add(&issues, OO_ERROR, OO_STRUCTURE, NULL, 0, 0, "$validate on %s needs a %s resource",
                   q->route.type->name, q->route.type->name);
        } else {
            fv_options opts = {0};
            opts.profiles = q->app->opt.profiles;
            char *url = sq_query_param(srv_req_query(q->req), "profile");
            if (!url && profile)
                url = strndup(profile, profile_len); /* whole: a long canonical is looked up as sent, never cut */
            if (url && url[0])
                choose_profile(q, url, &opts, &issues);
            free(url);
            if (target == 0) {
                fv_validate_doc(&doc, &opts, &issues);
            } else {
                /* a resource inside Parameters: validate its own text */
                fj_buf out = {0};
                fj_write(&doc, target, NULL, &out);
                size_t rlen;
                char *resource = fj_buf_take(&out, &rlen);
                if (resource)
                    fv_validate_buffer(resource, rlen, &opts, &issues);
                free(resource);
            }
        }
    }
    fj_doc_free(&doc);
    free(copy);
    free(mode); /* still here when the body was not JSON */
    rq_respond_issues(q, 200, &issues);
    oo_list_free(&issues);
    return false;
}
